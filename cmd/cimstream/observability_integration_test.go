package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cimstream/cimstream/internal/kafkatest"
)

// scrape returns the samples of /metrics whose series starts with prefix, summed by metric name.
func scrape(t *testing.T, admin, prefix string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return out // not listening yet
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err == nil {
			out[name] += v
		}
	}
	return out
}

// promQuery asks a Prometheus server for an instant vector and returns the first value (or -1).
func promQuery(t *testing.T, addr, query string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &r) != nil || len(r.Data.Result) == 0 {
		return -1
	}
	v, _ := strconv.ParseFloat(fmt.Sprint(r.Data.Result[0].Value[1]), 64)
	return v
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestIntegrationMetricsThroughRealPrometheus runs the binary, lets traffic flow, checks /metrics, and has
// a real Prometheus server scrape it: counters grow with traffic and lag falls to zero.
func TestIntegrationMetricsThroughRealPrometheus(t *testing.T) {
	if _, err := exec.LookPath("prometheus"); err != nil {
		t.Fatal("the prometheus server is not installed (Debian package prometheus; make test installs it)")
	}
	cfg := kafkatest.Config(t)
	channel := kafkatest.InboundTopic(cfg, "web")
	cfg.Topics.InboundChannels = []string{channel}
	cfg.Inbound.TopicRefreshInterval = time.Second
	kafkatest.CreateRequired(t, cfg)
	var lines []string
	for i := 0; i < 50; i++ {
		lines = append(lines, fmt.Sprintf(`c%d	{"header":{"sender":{"id":"w","type":"CONNECTOR","senderName":"W"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"c%d"}},"body":{"type":"PLAIN","markdownText":"m%d"}}`, i%7, i%7, i))
	}
	lines = append(lines, "bad\tnot json")
	kafkatest.KcatProduce(t, channel, true, lines...) // before the service starts: lag to catch up

	bin := buildBinary(t)
	admin := freeAddr(t)
	cfg.Admin.Address = admin
	text, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	svc := exec.Command(bin, "run", "--config", writeTemp(t, string(text)))
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Process.Kill(); _ = svc.Wait() })

	promAddr := freeAddr(t)
	dir := t.TempDir()
	// The alert rules as the chart renders them, loaded by the real server; the target carries the label
	// the rules select by (the chart's ServiceMonitor and the usual pod-annotation job set it).
	rulesFile := filepath.Join(dir, "rules.yml")
	if err := os.WriteFile(rulesFile, chartRules(t), 0o600); err != nil {
		t.Fatal(err)
	}
	promCfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(promCfg, []byte(fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: cimstream
    static_configs: [{targets: ["%s"], labels: {app_kubernetes_io_name: cimstream}}]
`, rulesFile, admin)), 0o600); err != nil {
		t.Fatal(err)
	}
	prom := exec.Command("prometheus", "--config.file="+promCfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prom.Process.Kill(); _ = prom.Wait() })

	// The channel topic has the repartition topic's partition count: the sessions stage reads it (the
	// fast path, docs/inbound.md).
	consumed := fmt.Sprintf(`cimstream_records_consumed_total{stage="inbound-sessions",topic=%q`, channel)
	waitFor(t, "51 records consumed from the channel topic", 45*time.Second, func() bool {
		return scrape(t, admin, consumed)["cimstream_records_consumed_total"] >= 51
	})
	waitFor(t, "50 records produced to the CCM topic", 45*time.Second, func() bool {
		return scrape(t, admin, "cimstream_records_produced_total{stage=\"inbound-sessions\",topic=\""+cfg.Topics.CCMInbound)["cimstream_records_produced_total"] >= 50
	})
	m := scrape(t, admin, "cimstream_")
	if m["cimstream_dead_letters_total"] != 1 || m["cimstream_validation_failures_total"] != 1 {
		t.Errorf("dead letters %v, validation failures %v; want 1 each", m["cimstream_dead_letters_total"], m["cimstream_validation_failures_total"])
	}
	if m["cimstream_sessions_opened_total"] != 7 {
		t.Errorf("sessions opened %v, want 7 (one per customer)", m["cimstream_sessions_opened_total"])
	}
	if m["cimstream_end_to_end_latency_seconds_count"] < 50 || m["cimstream_ready"] != 1 {
		t.Errorf("latency count %v, ready %v", m["cimstream_end_to_end_latency_seconds_count"], m["cimstream_ready"])
	}

	// Through Prometheus: the traffic is there, and the sessions group's lag (channel and repartition
	// topics) is back to zero (that lag rises with unconsumed input is tested on GroupLag itself).
	lagQuery := fmt.Sprintf(`sum(cimstream_consumer_lag_records{group=%q})`, cfg.Kafka.Consumer.GroupID+".sessions")
	waitFor(t, "Prometheus to see the consumed records", 45*time.Second, func() bool {
		return promQuery(t, promAddr, fmt.Sprintf(`sum(cimstream_records_consumed_total{topic=%q})`, channel)) >= 51
	})
	waitFor(t, "lag to fall to zero in Prometheus", 45*time.Second, func() bool {
		return promQuery(t, promAddr, lagQuery) == 0
	})
	if up := promQuery(t, promAddr, `up{app_kubernetes_io_name="cimstream"}`); up != 1 {
		t.Errorf("up = %v", up)
	}

	// Every rule loaded and evaluated without error against the real series; the availability alerts are
	// quiet and none fires (the latency one may be pending: the backlog was produced before the start).
	waitFor(t, "every alert rule evaluated", 30*time.Second, func() bool {
		rules := promRules(t, promAddr)
		if len(rules) < 10 {
			return false
		}
		for _, r := range rules {
			if r.Health != "ok" {
				if r.Health == "err" {
					t.Fatalf("rule %s: %s", r.Name, r.LastError)
				}
				return false
			}
		}
		return true
	})
	for _, q := range []string{`ALERTS{alertstate="firing"}`, `ALERTS{alertname=~"CimstreamDown|CimstreamTargetMissing|CimstreamNotReady|CimstreamNoOutputWhileInputArrives"}`} {
		if v := promQuery(t, promAddr, `count by (alertname, alertstate) (`+q+`)`); v != -1 {
			t.Errorf("%s: %v, want no alert; active: %v", q, v, promRules(t, promAddr))
		}
	}
}

type promRule struct {
	Name, State, Health, LastError string
}

// promRules lists the alerting rules a Prometheus server has loaded, with their health.
func promRules(t *testing.T, addr string) []promRule {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/api/v1/rules?type=alert")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Groups []struct {
				Rules []promRule `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if json.NewDecoder(resp.Body).Decode(&r) != nil {
		return nil
	}
	var out []promRule
	for _, g := range r.Data.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

// chartRules renders the chart's PrometheusRule with helm and returns its rule groups as a rule file.
func chartRules(t *testing.T) []byte {
	t.Helper()
	helm, err := filepath.Abs(filepath.Join("..", "..", ".cache", "bin", "helm"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(helm); err != nil {
		if helm, err = exec.LookPath("helm"); err != nil {
			t.Fatal("helm is not installed (scripts/deps.sh installs it into .cache/bin)")
		}
	}
	out, err := exec.Command(helm, "template", "cimstream", filepath.Join("..", "..", "deployments", "helm", "cimstream"),
		"--set", "prometheusRule.enabled=true", "--show-only", "templates/prometheusrule.yaml").Output()
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	var pr struct {
		Spec map[string]any `yaml:"spec"`
	}
	if err := yaml.Unmarshal(out, &pr); err != nil || pr.Spec["groups"] == nil {
		t.Fatalf("the rendered PrometheusRule: %v\n%s", err, out)
	}
	rules, err := yaml.Marshal(pr.Spec)
	if err != nil {
		t.Fatal(err)
	}
	return rules
}
