package deployments_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cimstream/cimstream/internal/config"
)

var update = flag.Bool("update", false, "rewrite the generated files (deployments/kubernetes/cimstream.yaml) from the chart")

const (
	chartDir   = "helm/cimstream"
	fullValues = "helm/cimstream/ci/full-values.yaml"
	// The plain manifests, rendered from the chart with its default values (make manifests).
	plainManifests = "kubernetes/cimstream.yaml"
	plainHeader    = "# Rendered from deployments/helm/cimstream with its default values by `make manifests`; do not edit.\n" +
		"# The chart is the way to deploy (docs/operations.md); this file is for `kubectl apply` without Helm.\n"
)

// required fails the test when make test runs it (CIMSTREAM_REQUIRE_KAFKA=1), and skips it otherwise.
func required(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("CIMSTREAM_REQUIRE_KAFKA") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// tool returns a pinned tool from .cache/bin (scripts/deps.sh installs it there), else from PATH.
func tool(t *testing.T, name string) string {
	t.Helper()
	if p, err := filepath.Abs(filepath.Join("..", ".cache", "bin", name)); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	required(t, name+" is not installed (scripts/deps.sh installs it into .cache/bin)")
	return ""
}

// helm runs the helm binary and returns its standard output.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(tool(t, "helm"), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

type object map[string]any

// dig walks nested maps by key; nil when a key is missing.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		if o, ok := v.(object); ok {
			v = map[string]any(o)
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	if o, ok := v.(object); ok { // yaml.v3 decodes nested maps into the type of the outer one
		return map[string]any(o)
	}
	return v
}

func str(v any, keys ...string) string {
	s, _ := dig(v, keys...).(string)
	return s
}

func strMap(v any) map[string]string {
	out := map[string]string{}
	m, _ := dig(v).(map[string]any)
	for k, x := range m {
		out[k] = fmt.Sprint(x)
	}
	return out
}

func list(v any, keys ...string) []any {
	l, _ := dig(v, keys...).([]any)
	return l
}

// rendered is a chart rendered by helm template.
type rendered struct {
	text string
	objs []object
}

func (r rendered) kind(kind string) []object {
	var out []object
	for _, o := range r.objs {
		if o["kind"] == kind {
			out = append(out, o)
		}
	}
	return out
}

// one returns the only non-hook object of a kind.
func (r rendered) one(t *testing.T, kind string) object {
	t.Helper()
	var found []object
	for _, o := range r.kind(kind) {
		if str(o, "metadata", "annotations", "helm.sh/hook") == "" {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s, got %d", kind, len(found))
	}
	return found[0]
}

func render(t *testing.T, args ...string) rendered {
	t.Helper()
	text, err := helm(t, append([]string{"template", "cimstream", chartDir, "--namespace", "cx"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return parseObjects(t, text)
}

func parseObjects(t *testing.T, text string) rendered {
	t.Helper()
	r := rendered{text: text}
	dec := yaml.NewDecoder(strings.NewReader(text))
	for {
		var o object
		err := dec.Decode(&o)
		if err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("rendered YAML: %v", err)
		}
		if o != nil {
			r.objs = append(r.objs, o)
		}
	}
	if len(r.objs) == 0 {
		t.Fatal("nothing rendered")
	}
	return r
}

func TestHelmLint(t *testing.T) {
	for _, args := range [][]string{{}, {"-f", fullValues}} {
		out, err := helm(t, append([]string{"lint", "--strict", chartDir}, args...)...)
		if err != nil {
			t.Errorf("%v\n%s", err, out)
		}
	}
	// Required values are enforced: TLS without a Secret, SASL without a password Secret, a bad limit.
	for set, want := range map[string]string{
		"kafka.tls.enabled=true":                 "kafka.tls.secretName is required",
		"kafka.sasl.mechanism=plain":             "kafka.sasl.passwordSecret.name is required",
		"resources.limits.memory=lots":           "resources.limits.memory",
		"shutdownTimeout=soon":                   "shutdownTimeout",
		"replicas=3":                             "replicas", // a misspelt value fails (values.schema.json)
		"kafka.sasl.mechanism=scram":             "mechanism",
		"image.tag=1.0,image.digest=sha256:abcd": "", // digest wins, checked in TestChartImage
	} {
		_, err := helm(t, "template", "cimstream", chartDir, "--set", set)
		if want == "" {
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--set %s: want an error naming %q, got %v", set, want, err)
		}
	}
}

func chartAppVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		AppVersion string `yaml:"appVersion"`
	}
	if err := yaml.Unmarshal(data, &c); err != nil || c.AppVersion == "" {
		t.Fatalf("Chart.yaml appVersion: %v", err)
	}
	return c.AppVersion
}

func TestChartImage(t *testing.T) {
	image := func(r rendered) string {
		return str(list(r.one(t, "Deployment"), "spec", "template", "spec", "containers")[0], "image")
	}
	if got, want := image(render(t)), "ghcr.io/cimstream/cimstream:"+chartAppVersion(t); got != want {
		t.Errorf("default image %s, want %s (the chart's appVersion)", got, want)
	}
	if got := image(render(t, "--set", "image.tag=1.2.3")); got != "ghcr.io/cimstream/cimstream:1.2.3" {
		t.Errorf("image with a tag: %s", got)
	}
	digest := "sha256:" + strings.Repeat("ab", 32)
	if got := image(render(t, "--set", "image.digest="+digest)); got != "ghcr.io/cimstream/cimstream@"+digest {
		t.Errorf("image with a digest: %s", got)
	}
}

// TestChartGoMemLimit: GOMEMLIMIT follows the memory limit in every unit Kubernetes takes, and is left
// out without a limit.
func TestChartGoMemLimit(t *testing.T) {
	for limit, want := range map[string]string{"512Mi": "409MiB", "1.5Gi": "1228MiB", "1G": "762MiB", "300000000": "228MiB", "": ""} {
		r := render(t, "--set", "resources.limits.memory="+limit)
		got := envOf(list(r.one(t, "Deployment"), "spec", "template", "spec", "containers")[0])["GOMEMLIMIT"]
		if got != want {
			t.Errorf("memory limit %q: GOMEMLIMIT %q, want %q (80%%)", limit, got, want)
		}
	}
}

// envOf returns a rendered container's environment by name.
func envOf(container any) map[string]string {
	env := map[string]string{}
	for _, e := range list(container, "env") {
		env[str(e, "name")] = str(e, "value")
	}
	return env
}

// checkRestricted checks a pod spec against Pod Security "restricted", plus no service-account token.
func checkRestricted(t *testing.T, what string, pod any) {
	t.Helper()
	if dig(pod, "automountServiceAccountToken") != false {
		t.Errorf("%s: automountServiceAccountToken must be false", what)
	}
	if dig(pod, "securityContext", "runAsNonRoot") != true || str(pod, "securityContext", "seccompProfile", "type") != "RuntimeDefault" {
		t.Errorf("%s: the pod must run as non-root with the RuntimeDefault seccomp profile: %v", what, dig(pod, "securityContext"))
	}
	if dig(pod, "hostNetwork") == true || dig(pod, "hostPID") == true {
		t.Errorf("%s: host namespaces", what)
	}
	for _, c := range list(pod, "containers") {
		sc := dig(c, "securityContext")
		if dig(sc, "allowPrivilegeEscalation") != false || dig(sc, "readOnlyRootFilesystem") != true || dig(sc, "runAsNonRoot") != true {
			t.Errorf("%s container %s: want allowPrivilegeEscalation false, readOnlyRootFilesystem and runAsNonRoot true: %v", what, str(c, "name"), sc)
		}
		if !slices.Contains(list(sc, "capabilities", "drop"), any("ALL")) {
			t.Errorf("%s container %s must drop ALL capabilities", what, str(c, "name"))
		}
		if str(sc, "seccompProfile", "type") != "RuntimeDefault" {
			t.Errorf("%s container %s: seccompProfile RuntimeDefault", what, str(c, "name"))
		}
	}
	for _, v := range list(pod, "volumes") {
		if dig(v, "hostPath") != nil {
			t.Errorf("%s: hostPath volume %s", what, str(v, "name"))
		}
	}
}

// subset reports whether every label of sel is in labels.
func subset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// loadConfig checks that cimstream accepts a rendered configuration; files maps mounted paths to contents.
func loadConfig(t *testing.T, text string, files map[string]string) config.Config {
	t.Helper()
	dir := t.TempDir()
	for path, content := range files {
		local := filepath.Join(dir, filepath.Base(path))
		if err := os.WriteFile(local, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		text = strings.ReplaceAll(text, path, local)
	}
	file := filepath.Join(dir, "cimstream.yaml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file, nil, nil)
	if err != nil {
		t.Fatalf("cimstream rejects the rendered configuration: %v\n%s", err, text)
	}
	return cfg
}

func TestChartDefaults(t *testing.T) {
	r := render(t)
	for kind, n := range map[string]int{"Deployment": 1, "Service": 1, "ConfigMap": 2, "PodDisruptionBudget": 1, "ServiceAccount": 1, "Job": 1, "ServiceMonitor": 0, "PrometheusRule": 0} {
		if got := len(r.kind(kind)); got != n {
			t.Errorf("%d %s, want %d", got, kind, n)
		}
	}
	dep := r.one(t, "Deployment")
	tmpl := dig(dep, "spec", "template")
	pod := dig(tmpl, "spec")
	podLabels := strMap(dig(tmpl, "metadata", "labels"))
	checkRestricted(t, "Deployment", pod)
	if podLabels["app.kubernetes.io/name"] != "cimstream" {
		t.Errorf("the pods must carry app.kubernetes.io/name=cimstream (the alert rules select by it): %v", podLabels)
	}
	if !subset(strMap(dig(dep, "spec", "selector", "matchLabels")), podLabels) {
		t.Error("the Deployment's selector does not match its pods")
	}

	c := list(pod, "containers")[0]
	if str(c, "livenessProbe", "httpGet", "path") != "/healthz" || str(c, "readinessProbe", "httpGet", "path") != "/readyz" || str(c, "startupProbe", "httpGet", "path") != "/healthz" {
		t.Error("probes must use /healthz (liveness, startup) and /readyz (readiness)")
	}
	var ports []string
	containerPort := 0
	for _, p := range list(c, "ports") {
		ports = append(ports, str(p, "name"))
		containerPort, _ = dig(p, "containerPort").(int)
	}
	for _, probe := range []string{"livenessProbe", "readinessProbe", "startupProbe"} {
		if p := fmt.Sprint(dig(c, probe, "httpGet", "port")); !slices.Contains(ports, p) {
			t.Errorf("%s uses port %s, which the container does not declare (%v)", probe, p, ports)
		}
	}
	if str(c, "resources", "limits", "memory") == "" || str(c, "resources", "requests", "cpu") == "" || str(c, "resources", "requests", "memory") == "" {
		t.Error("resources must be set")
	}
	env := map[string]string{}
	for _, e := range list(c, "env") {
		env[str(e, "name")] = str(e, "value")
	}
	// 80% of 512Mi is 409.6 MiB.
	if env["GOMEMLIMIT"] != "409MiB" {
		t.Errorf("GOMEMLIMIT %q, want 409MiB (80%% of the 512Mi limit)", env["GOMEMLIMIT"])
	}

	// The configuration: accepted by cimstream, admin reachable by probes and Prometheus.
	cm := r.one(t, "ConfigMap")
	text := str(cm, "data", "cimstream.yaml")
	cfg := loadConfig(t, text, nil)
	if strings.HasPrefix(cfg.Admin.Address, "127.") || !strings.HasSuffix(cfg.Admin.Address, fmt.Sprintf(":%d", containerPort)) {
		t.Errorf("admin address %s: must listen beyond loopback on the container port %d", cfg.Admin.Address, containerPort)
	}
	grace, _ := dig(pod, "terminationGracePeriodSeconds").(int)
	if time.Duration(grace)*time.Second <= cfg.Shutdown.Timeout {
		t.Errorf("terminationGracePeriodSeconds %d must exceed shutdown.timeout %v", grace, cfg.Shutdown.Timeout)
	}
	if str(tmpl, "metadata", "annotations", "prometheus.io/port") != fmt.Sprint(containerPort) {
		t.Error("the scrape annotation must name the admin port")
	}
	mounted := false
	for _, v := range list(pod, "volumes") {
		mounted = mounted || str(v, "configMap", "name") == str(cm, "metadata", "name")
	}
	if !mounted {
		t.Error("the pods do not mount the ConfigMap")
	}

	// The Service and the disruption budget select the pods; spreading is by the pods' labels.
	svc := r.one(t, "Service")
	if !subset(strMap(dig(svc, "spec", "selector")), podLabels) {
		t.Error("the Service does not select the pods")
	}
	if str(list(svc, "spec", "ports")[0], "targetPort") != "admin" {
		t.Error("the Service must target the admin port")
	}
	pdb := r.one(t, "PodDisruptionBudget")
	if dig(pdb, "spec", "maxUnavailable") == nil || !subset(strMap(dig(pdb, "spec", "selector", "matchLabels")), podLabels) {
		t.Error("the disruption budget must bound unavailability of these pods")
	}
	spread := list(pod, "topologySpreadConstraints")
	if len(spread) == 0 {
		t.Error("no topology spread")
	}
	for _, s := range spread {
		if !subset(strMap(dig(s, "labelSelector", "matchLabels")), podLabels) {
			t.Errorf("spread constraint %v does not select the pods", s)
		}
	}
	if r.one(t, "ServiceAccount")["automountServiceAccountToken"] != false {
		t.Error("the ServiceAccount must not automount its token")
	}

	// The topic Job: a pre-install and pre-upgrade hook running `topics create` on the same configuration,
	// from a hook ConfigMap created before it.
	job := r.kind("Job")[0]
	hooks := strings.Split(str(job, "metadata", "annotations", "helm.sh/hook"), ",")
	if !slices.Contains(hooks, "pre-install") || !slices.Contains(hooks, "pre-upgrade") {
		t.Errorf("the Job must be a pre-install and pre-upgrade hook, is %v", hooks)
	}
	jobPod := dig(job, "spec", "template", "spec")
	checkRestricted(t, "Job", jobPod)
	if dig(jobPod, "restartPolicy") == "Always" {
		t.Error("a Job's pods cannot restart Always")
	}
	args := list(list(jobPod, "containers")[0], "args")
	if len(args) < 2 || args[0] != "topics" || args[1] != "create" {
		t.Errorf("the Job runs %v, want topics create", args)
	}
	var jobCM object
	for _, v := range list(jobPod, "volumes") {
		for _, o := range r.kind("ConfigMap") {
			if name := str(v, "configMap", "name"); name != "" && str(o, "metadata", "name") == name {
				jobCM = o
			}
		}
	}
	if jobCM == nil {
		t.Fatal("the Job mounts no ConfigMap of the chart")
	}
	if !slices.Contains(strings.Split(str(jobCM, "metadata", "annotations", "helm.sh/hook"), ","), "pre-install") {
		t.Error("the Job's ConfigMap must be a hook too: the release's ConfigMap does not exist yet on install")
	}
	cmWeight, _ := strconv.Atoi(str(jobCM, "metadata", "annotations", "helm.sh/hook-weight"))
	jobWeight, _ := strconv.Atoi(str(job, "metadata", "annotations", "helm.sh/hook-weight"))
	if cmWeight >= jobWeight {
		t.Errorf("the Job's ConfigMap (hook weight %d) must be created before the Job (%d)", cmWeight, jobWeight)
	}
	if str(jobCM, "data", "cimstream.yaml") != text {
		t.Error("the Job's configuration differs from the service's")
	}
	if name := str(jobPod, "serviceAccountName"); name == str(r.one(t, "ServiceAccount"), "metadata", "name") {
		t.Error("the Job cannot use the chart's ServiceAccount: it is created after pre-install hooks")
	}
}

// TestChartChecksumRollsPods: a configuration change changes the pod template (a rollout); other
// changes leave the checksum alone.
func TestChartChecksumRollsPods(t *testing.T) {
	sum := func(args ...string) string {
		s := str(render(t, args...).one(t, "Deployment"), "spec", "template", "metadata", "annotations", "checksum/config")
		if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(s) {
			t.Fatalf("checksum/config annotation %q", s)
		}
		return s
	}
	base := sum()
	if sum("--set", "replicaCount=5") != base {
		t.Error("the checksum changed without a configuration change")
	}
	for _, set := range []string{"channels.41445556677=whatsapp", "kafka.brokers={b1:9092}", "config.inbound.sessionIdleTimeout=45m"} {
		if sum("--set", set) == base {
			t.Errorf("--set %s changes the configuration but not the checksum", set)
		}
	}
}

func TestChartFullValues(t *testing.T) {
	r := render(t, "-f", fullValues)
	dep := r.one(t, "Deployment")
	pod := dig(dep, "spec", "template", "spec")
	podLabels := strMap(dig(dep, "spec", "template", "metadata", "labels"))
	checkRestricted(t, "Deployment", pod)
	c := list(pod, "containers")[0]
	if got := str(c, "image"); got != "registry.example.com/cx/cimstream:0.1.0-rc.1" {
		t.Errorf("image %s", got)
	}
	if memLimit := envOf(c)["GOMEMLIMIT"]; memLimit != "1843MiB" {
		t.Errorf("GOMEMLIMIT %s, want 1843MiB (90%% of 2Gi)", memLimit)
	}
	if grace := dig(pod, "terminationGracePeriodSeconds"); grace != 75 {
		t.Errorf("terminationGracePeriodSeconds %v, want 75 (shutdownTimeout 1m + 15 s)", grace)
	}
	if dig(dep, "spec", "template", "metadata", "annotations", "prometheus.io/scrape") != nil {
		t.Error("metrics.podAnnotations=false must drop the scrape annotations (the ServiceMonitor scrapes)")
	}

	// TLS and SASL come from Secrets, mounted where the configuration points, in the pods and the Job.
	text := str(r.one(t, "ConfigMap"), "data", "cimstream.yaml")
	var cfgDoc map[string]any
	if err := yaml.Unmarshal([]byte(text), &cfgDoc); err != nil {
		t.Fatal(err)
	}
	secretFiles := map[string]string{} // path in the pod -> Secret
	mountsOf := func(podSpec any, container any) {
		for _, m := range list(container, "volumeMounts") {
			for _, v := range list(podSpec, "volumes") {
				if str(v, "name") == str(m, "name") && str(v, "secret", "secretName") != "" {
					secretFiles[str(m, "mountPath")] = str(v, "secret", "secretName")
				}
			}
		}
	}
	mountsOf(pod, c)
	for _, f := range []struct{ key, secret string }{
		{"caFile", "kafka-client-tls"}, {"certFile", "kafka-client-tls"}, {"keyFile", "kafka-client-tls"}, {"passwordFile", "kafka-cimstream-user"},
	} {
		file := str(cfgDoc, "kafka", "tls", f.key) + str(cfgDoc, "kafka", "sasl", f.key)
		if file == "" || secretFiles[filepath.Dir(file)] != f.secret {
			t.Errorf("kafka %s %q: not mounted from Secret %s (mounts: %v)", f.key, file, f.secret, secretFiles)
		}
	}
	job := r.kind("Job")[0]
	jobPod := dig(job, "spec", "template", "spec")
	before := maps.Clone(secretFiles)
	clear(secretFiles)
	mountsOf(jobPod, list(jobPod, "containers")[0])
	if !maps.Equal(before, secretFiles) {
		t.Errorf("the Job mounts %v, the pods %v", secretFiles, before)
	}
	hooks := list(cfgDoc, "egress", "webhooks")
	if len(hooks) != 1 || secretFiles[filepath.Dir(str(hooks[0], "secretFile"))] != "web-webhook" {
		t.Errorf("egress.webhooks %v: the signing secret is not mounted from Secret web-webhook (mounts: %v)", hooks, secretFiles)
	}
	cfg := loadConfig(t, text, map[string]string{"/etc/cimstream/sasl/password": "s3cret", "/etc/cimstream/webhooks/web/hmac": "whsec"})
	if len(cfg.Egress.Webhooks) != 1 || string(cfg.Egress.Webhooks[0].Secret) != "whsec" || cfg.Egress.Webhooks[0].Channel != "web" {
		t.Errorf("egress.webhooks %+v: the webhook values did not reach the configuration", cfg.Egress.Webhooks)
	}
	if cfg.Kafka.SASL.Password != "s3cret" || cfg.Kafka.SASL.Mechanism != "scram-sha-512" || !cfg.Kafka.TLS.Enabled {
		t.Errorf("SASL/TLS not configured: mechanism %q, tls %v", cfg.Kafka.SASL.Mechanism, cfg.Kafka.TLS.Enabled)
	}
	if cfg.Channels["41445556677"] != "whatsapp" || len(cfg.Deprecations()) != 0 || len(cfg.Outbound.Routes) != 1 || cfg.Inbound.SessionIdleTimeout != 30*time.Minute {
		t.Errorf("channels %v (deprecations %v), routes %v, sessionIdleTimeout %v: values did not reach the configuration", cfg.Channels, cfg.Deprecations(), cfg.Outbound.Routes, cfg.Inbound.SessionIdleTimeout)
	}
	if cfg.Topics.Partitions != 24 || cfg.Kafka.Consumer.GroupID != "cimstream-cx" {
		t.Errorf("partitions %d, group %s", cfg.Topics.Partitions, cfg.Kafka.Consumer.GroupID)
	}

	// The ServiceMonitor selects the Service, on a port it has, in its namespace, and copies the label
	// the alert rules select by.
	svc := r.one(t, "Service")
	sm := r.one(t, "ServiceMonitor")
	if !subset(strMap(dig(sm, "spec", "selector", "matchLabels")), strMap(dig(svc, "metadata", "labels"))) {
		t.Errorf("the ServiceMonitor's selector %v does not match the Service's labels %v", dig(sm, "spec", "selector"), dig(svc, "metadata", "labels"))
	}
	if !slices.Contains(list(sm, "spec", "namespaceSelector", "matchNames"), any("cx")) {
		t.Error("the ServiceMonitor must look in the release's namespace")
	}
	var svcPorts []string
	for _, p := range list(svc, "spec", "ports") {
		svcPorts = append(svcPorts, str(p, "name"))
	}
	for _, e := range list(sm, "spec", "endpoints") {
		if !slices.Contains(svcPorts, str(e, "port")) || str(e, "path") != "/metrics" {
			t.Errorf("endpoint %v: want /metrics on one of the Service's ports %v", e, svcPorts)
		}
	}
	if !slices.Contains(list(sm, "spec", "podTargetLabels"), any("app.kubernetes.io/name")) || podLabels["app.kubernetes.io/name"] != "cimstream" {
		t.Error("the ServiceMonitor must copy app.kubernetes.io/name from the pods: the alert rules select app_kubernetes_io_name")
	}
	if strMap(dig(sm, "metadata", "labels"))["release"] != "kube-prometheus-stack" {
		t.Error("serviceMonitor.labels not applied")
	}

	// The PrometheusRule holds the rules promtool tests, with the runbook base URL of the values.
	pr := r.one(t, "PrometheusRule")
	want := rulesFile(t)
	for i, g := range want.Groups {
		for j := range g.Rules {
			a := &want.Groups[i].Rules[j].Annotations
			(*a)["runbook_url"] = strings.Replace((*a)["runbook_url"], defaultRunbooks, "https://runbooks.example.com/cimstream", 1)
		}
	}
	var got ruleFile
	data, _ := yaml.Marshal(dig(pr, "spec"))
	if err := yaml.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the PrometheusRule differs from helm/cimstream/files/alerts.yml:\n%s", data)
	}
}

const defaultRunbooks = "https://github.com/cimstream/cimstream/blob/main/docs/operations.md"

// crdSchemas turns the Prometheus Operator's CRDs into the JSON schemas kubeconform reads, strict
// (unknown fields are errors, as for the built-in kinds).
func crdSchemas(t *testing.T, crdDir, out string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(crdDir, "*.yaml"))
	if len(files) < 2 {
		required(t, "no CRDs in "+crdDir+" (scripts/deps.sh fetches them)")
	}
	var strict func(v any)
	strict = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if _, ok := x["properties"]; ok && x["x-kubernetes-preserve-unknown-fields"] != true {
				if _, set := x["additionalProperties"]; !set {
					x["additionalProperties"] = false
				}
			}
			for _, c := range x {
				strict(c)
			}
		case []any:
			for _, c := range x {
				strict(c)
			}
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var crd map[string]any
		if err := yaml.Unmarshal(data, &crd); err != nil {
			t.Fatal(err)
		}
		group, kind := str(crd, "spec", "group"), strings.ToLower(str(crd, "spec", "names", "kind"))
		for _, v := range list(crd, "spec", "versions") {
			schema := dig(v, "schema", "openAPIV3Schema")
			strict(schema)
			data, err := json.Marshal(schema)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(out, group, kind+"_"+str(v, "name")+".json")
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestChartSchemas validates the rendered manifests against the Kubernetes schemas of the oldest and the
// newest Kubernetes version checked, and the ServiceMonitor and PrometheusRule against the operator's
// CRDs; nothing may be skipped. A broken manifest must be caught (the validator really validates).
func TestChartSchemas(t *testing.T) {
	kubeconform := tool(t, "kubeconform")
	schemas, _ := filepath.Abs(filepath.Join("..", ".cache", "k8s-schemas"))
	versions, _ := filepath.Glob(filepath.Join(schemas, "v*-local-strict"))
	if len(versions) == 0 {
		required(t, "no Kubernetes schemas in .cache/k8s-schemas (scripts/deps.sh fetches them)")
	}
	crds := t.TempDir()
	crdSchemas(t, filepath.Join(schemas, "crds"), crds)

	dir := t.TempDir()
	inputs := map[string]string{}
	def, full := render(t), render(t, "-f", fullValues)
	inputs["default.yaml"], inputs["full.yaml"] = def.text, full.text
	inputs["broken.yaml"] = strings.Replace(full.text, "terminationGracePeriodSeconds:", "terminationGracePeriodSecondz:", 1)
	inputs["broken-monitor.yaml"] = strings.Replace(full.text, "podTargetLabels:", "podTargetLabelz:", 1)
	for name, text := range inputs {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, vdir := range versions {
		version := strings.TrimPrefix(strings.TrimSuffix(filepath.Base(vdir), "-local-strict"), "v")
		args := []string{"-strict", "-verbose", "-output", "json", "-kubernetes-version", version,
			"-schema-location", schemas + "/{{ .NormalizedKubernetesVersion }}-local-strict/{{ .ResourceKind }}{{ .KindSuffix }}.json",
			"-schema-location", crds + "/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"}
		for name := range inputs {
			args = append(args, filepath.Join(dir, name))
		}
		out, _ := exec.Command(kubeconform, args...).Output() // exits 1 for the broken files
		var res struct {
			Resources []struct {
				Filename, Kind, Name, Status, Msg string
			} `json:"resources"`
		}
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("kubeconform on Kubernetes %s: %v\n%s", version, err, out)
		}
		valid, invalid := map[string]int{}, map[string]int{}
		for _, r := range res.Resources {
			file := filepath.Base(r.Filename)
			switch r.Status {
			case "statusValid":
				valid[file]++
			case "statusInvalid":
				invalid[file]++
				if !strings.HasPrefix(file, "broken") {
					t.Errorf("Kubernetes %s: %s %s in %s is invalid: %s", version, r.Kind, r.Name, file, r.Msg)
				}
			default: // an error (no schema) or skipped: every kind must be validated
				t.Errorf("Kubernetes %s: %s %s in %s: %s %s", version, r.Kind, r.Name, file, r.Status, r.Msg)
			}
		}
		for file, r := range map[string]rendered{"default.yaml": def, "full.yaml": full} {
			if valid[file] != len(r.objs) {
				t.Errorf("Kubernetes %s: %d of the %d objects of %s valid", version, valid[file], len(r.objs), file)
			}
		}
		for _, file := range []string{"broken.yaml", "broken-monitor.yaml"} {
			if invalid[file] != 1 {
				t.Errorf("Kubernetes %s: the broken object in %s was not caught (%d invalid)", version, file, invalid[file])
			}
		}
	}
}

// TestPlainManifestsAreRendered: deployments/kubernetes/cimstream.yaml is the chart rendered with its
// defaults, nothing else (go test ./deployments -run TestPlainManifestsAreRendered -update rewrites it).
func TestPlainManifestsAreRendered(t *testing.T) {
	text, err := helm(t, "template", "cimstream", chartDir)
	if err != nil {
		t.Fatal(err)
	}
	want := plainHeader + text
	if *update {
		if err := os.WriteFile(plainManifests, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(plainManifests)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s is not the chart's rendering; run make manifests", plainManifests)
	}
	others, _ := filepath.Glob("kubernetes/*")
	if len(others) != 1 {
		t.Errorf("deployments/kubernetes holds %v: only the rendered file belongs there", others)
	}
}

// The image sets CIMSTREAM_ADMIN_ADDRESS and CIMSTREAM_LOG_FORMAT for plain `docker run`, and environment
// variables beat the config file: the chart must repeat its own values in the container's environment, or
// a port other than 8080 leaves probes and scrapes knocking on a port nobody listens on. Service links are
// off, so Kubernetes does not inject CIMSTREAM_SERVICE_HOST and the like (unknown variables are errors).
func TestChartPortAndEnvironmentAgree(t *testing.T) {
	r := render(t, "--set", "service.port=9090", "--set", "config.log.format=console")
	dep := r.one(t, "Deployment")
	pod := dig(dep, "spec", "template", "spec")
	if dig(pod, "enableServiceLinks") != false {
		t.Error("the Deployment's pods must not get service-link variables (enableServiceLinks: false)")
	}
	for _, job := range r.kind("Job") {
		if dig(job, "spec", "template", "spec", "enableServiceLinks") != false {
			t.Error("the topics Job's pod must not get service-link variables")
		}
	}
	container := list(pod, "containers")[0]
	env := envOf(container)
	if env["CIMSTREAM_ADMIN_ADDRESS"] != "0.0.0.0:9090" || env["CIMSTREAM_LOG_FORMAT"] != "console" {
		t.Fatalf("container environment %v must carry the chart's admin address and log format", env)
	}
	if port := dig(list(container, "ports")[0], "containerPort"); fmt.Sprint(port) != "9090" {
		t.Errorf("containerPort %v, want 9090", port)
	}
	// What the process ends up with: the image's variables, overridden by the container's.
	effective := []string{"CIMSTREAM_ADMIN_ADDRESS=0.0.0.0:8080", "CIMSTREAM_LOG_FORMAT=json"}
	for k, v := range env {
		if strings.HasPrefix(k, "CIMSTREAM_") {
			effective = append(effective, k+"="+v)
		}
	}
	var cm object
	for _, o := range r.kind("ConfigMap") {
		if str(o, "metadata", "annotations", "helm.sh/hook") == "" {
			cm = o
		}
	}
	file := filepath.Join(t.TempDir(), "cimstream.yaml")
	if err := os.WriteFile(file, []byte(str(cm, "data", "cimstream.yaml")), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file, effective, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Admin.Address != "0.0.0.0:9090" || cfg.Log.Format != "console" {
		t.Errorf("the process would listen on %s with %s logs", cfg.Admin.Address, cfg.Log.Format)
	}
}

// A plain byte count in a values file reaches the template as a float (YAML numbers): still a quantity.
func TestChartGoMemLimitFromAValuesFile(t *testing.T) {
	for text, want := range map[string]string{"536870912": "409MiB", "1e9": "762MiB", "\"512Mi\"": "409MiB"} {
		file := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(file, []byte("resources:\n  limits:\n    memory: "+text+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r := render(t, "-f", file)
		got := envOf(list(r.one(t, "Deployment"), "spec", "template", "spec", "containers")[0])["GOMEMLIMIT"]
		if got != want {
			t.Errorf("memory: %s in a values file: GOMEMLIMIT %q, want %q", text, got, want)
		}
	}
}

// TestChartHTTPIngress: httpIngress.enabled opens the ingress on its port in the configuration, the
// container and the Service; off by default.
func TestChartHTTPIngress(t *testing.T) {
	configOf := func(r rendered) config.Config {
		for _, o := range r.kind("ConfigMap") {
			if str(o, "metadata", "annotations", "helm.sh/hook") == "" {
				return loadConfig(t, str(o, "data", "cimstream.yaml"), nil)
			}
		}
		t.Fatal("no ConfigMap")
		return config.Config{}
	}
	portNames := func(ports []any) map[string]string {
		out := map[string]string{}
		for _, p := range ports {
			out[str(p, "name")] = fmt.Sprint(dig(p, "port")) + "/" + fmt.Sprint(dig(p, "containerPort"))
		}
		return out
	}
	off := render(t)
	if cfg := configOf(off); cfg.Ingress.Address != "" {
		t.Errorf("ingress on by default: %q", cfg.Ingress.Address)
	}
	if _, ok := portNames(list(off.one(t, "Service"), "spec", "ports"))["ingress"]; ok {
		t.Error("the Service has an ingress port by default")
	}
	on := render(t, "--set", "httpIngress.enabled=true", "--set", "httpIngress.port=9443", "--set", "channels.web=web",
		"--set", "config.ingress.tokensFile=/etc/cimstream/ingress/tokens")
	cfg := configOf(on)
	if cfg.Ingress.Address != "0.0.0.0:9443" || cfg.Ingress.TokensFile != "/etc/cimstream/ingress/tokens" || cfg.ChannelMap()["web"] != "web" {
		t.Errorf("ingress %+v, channels %v", cfg.Ingress, cfg.ChannelMap())
	}
	if got := portNames(list(on.one(t, "Service"), "spec", "ports"))["ingress"]; got != "9443/<nil>" {
		t.Errorf("Service ingress port %q, want 9443", got)
	}
	container := list(on.one(t, "Deployment"), "spec", "template", "spec", "containers")[0]
	if got := portNames(list(container, "ports"))["ingress"]; got != "<nil>/9443" {
		t.Errorf("container ingress port %q, want 9443", got)
	}
}
