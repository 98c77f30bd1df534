package deployments_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

// TestComposeFile validates docker-compose.yml against the Compose specification (no Docker engine
// needed) and checks that every file it mounts exists.
func TestComposeFile(t *testing.T) {
	root, _ := filepath.Abs("..")
	details := types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yml")}},
		Environment: types.Mapping{},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	project, err := loader.LoadWithContext(ctx, details, func(o *loader.Options) { o.SetProjectName("cimstream", true) })
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for _, name := range []string{"kafka", "topics", "cimstream", "prometheus", "grafana"} {
		if _, ok := project.Services[name]; !ok {
			t.Errorf("service %s missing", name)
		}
	}
	for name, svc := range project.Services {
		for _, v := range svc.Volumes {
			if v.Type == types.VolumeTypeBind {
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("service %s mounts %s, which does not exist", name, v.Source)
				}
			}
		}
	}
	// The broker is the Kafka version the tests run against (scripts/kafka/pom.xml).
	pom, err := os.ReadFile(filepath.Join(root, "scripts", "kafka", "pom.xml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`<kafka.version>([^<]+)</kafka.version>`).FindSubmatch(pom)
	if m == nil {
		t.Fatal("no kafka.version in scripts/kafka/pom.xml")
	}
	if img := project.Services["kafka"].Image; img != "apache/kafka:"+string(m[1]) {
		t.Errorf("compose runs %s, the tests Apache Kafka %s", img, m[1])
	}
	if kafkatest.Image != "apache/kafka:"+string(m[1]) {
		t.Errorf("tests with Docker start %s, the local broker is Apache Kafka %s", kafkatest.Image, m[1])
	}
	cs := project.Services["cimstream"]
	if b := cs.Environment["CIMSTREAM_KAFKA_BROKERS"]; b == nil || *b != "kafka:29092" {
		t.Errorf("cimstream must reach the broker on its Docker listener, got %v", b)
	}
	if cs.StopGracePeriod == nil || time.Duration(*cs.StopGracePeriod) <= config.Default().Shutdown.Timeout {
		t.Errorf("stop_grace_period must exceed the shutdown budget")
	}
	if _, err := os.Stat(filepath.Join(root, "Dockerfile")); err != nil {
		t.Fatal(err)
	}
}

type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Data map[string]string
	Spec struct {
		Template struct {
			Spec struct {
				TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
				Containers                    []struct {
					LivenessProbe  *probe `yaml:"livenessProbe"`
					ReadinessProbe *probe `yaml:"readinessProbe"`
					Resources      struct {
						Requests map[string]string `yaml:"requests"`
						Limits   map[string]string `yaml:"limits"`
					} `yaml:"resources"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
		MaxUnavailable any `yaml:"maxUnavailable"`
	} `yaml:"spec"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
	} `yaml:"httpGet"`
}

// TestKubernetesManifests parses the rendered manifests and checks what operators rely on: probes on the
// health endpoints, resources, a grace period longer than the shutdown budget, a disruption budget, and a
// configuration that cimstream itself accepts. (TestChartDefaults checks the same and more on the chart;
// this one runs without helm.)
func TestKubernetesManifests(t *testing.T) {
	data, err := os.ReadFile(plainManifests)
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string]k8sObject{}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	for {
		var o k8sObject
		if err := dec.Decode(&o); err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("%s: %v", plainManifests, err)
		}
		if _, seen := objs[o.Kind]; !seen && o.Metadata.Annotations["helm.sh/hook"] == "" {
			objs[o.Kind] = o
		}
	}
	for _, kind := range []string{"Deployment", "Service", "ConfigMap", "PodDisruptionBudget"} {
		if _, ok := objs[kind]; !ok {
			t.Fatalf("no %s manifest", kind)
		}
	}
	cfgFile := filepath.Join(t.TempDir(), "cimstream.yaml")
	if err := os.WriteFile(cfgFile, []byte(objs["ConfigMap"].Data["cimstream.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgFile, nil, nil)
	if err != nil {
		t.Fatalf("the ConfigMap's configuration is rejected: %v", err)
	}
	if strings.HasPrefix(cfg.Admin.Address, "127.") {
		t.Error("in a pod the admin server must listen beyond loopback for probes and scraping")
	}
	pod := objs["Deployment"].Spec.Template.Spec
	if time.Duration(pod.TerminationGracePeriodSeconds)*time.Second <= cfg.Shutdown.Timeout {
		t.Errorf("terminationGracePeriodSeconds %d must exceed shutdown.timeout %v", pod.TerminationGracePeriodSeconds, cfg.Shutdown.Timeout)
	}
	c := pod.Containers[0]
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Error("probes must use /healthz (liveness) and /readyz (readiness)")
	}
	if c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" || c.Resources.Requests["cpu"] == "" {
		t.Error("resources must be set")
	}
	if objs["PodDisruptionBudget"].Spec.MaxUnavailable == nil {
		t.Error("the disruption budget must bound unavailability")
	}
}

// TestDockerfile: every base image pinned by digest, OCI labels, a numeric non-root user.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	from := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(text, -1)
	if len(from) < 2 {
		t.Fatalf("want a build and a runtime stage, got %v", from)
	}
	for _, f := range from {
		if !regexp.MustCompile(`@sha256:[0-9a-f]{64}$`).MatchString(f[1]) {
			t.Errorf("base image %s is not pinned by digest", f[1])
		}
	}
	for _, label := range []string{"title", "description", "source", "version", "revision"} {
		if !strings.Contains(text, "org.opencontainers.image."+label+"=") {
			t.Errorf("no OCI label org.opencontainers.image.%s", label)
		}
	}
	users := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindAllStringSubmatch(text, -1)
	if len(users) == 0 || !regexp.MustCompile(`^[1-9][0-9]*(:[1-9][0-9]*)?$`).MatchString(users[len(users)-1][1]) {
		t.Errorf("the image must end with a numeric non-root USER (runAsNonRoot checks it), got %v", users)
	}
}
