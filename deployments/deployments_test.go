// Package deployments_test checks the operator files against the service: the dashboard and the alert
// rules may only use metrics cimstream exports, and the rules pass promtool.
package deployments_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/service"
)

var metricToken = regexp.MustCompile(`\b(cimstream|process|go)_[a-z0-9_]+`)

// exported lists every metric name the service registers.
func exported(t *testing.T) []string {
	t.Helper()
	svc, err := service.New(config.Default(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return svc.MetricNames()
}

// checkExpr fails for every metric an expression names that the service does not export.
func checkExpr(t *testing.T, where, expr string, names []string) int {
	t.Helper()
	found := 0
	for _, tok := range metricToken.FindAllString(expr, -1) {
		base := tok
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(tok, suffix); ok && slices.Contains(names, b) {
				base = b
			}
		}
		if !slices.Contains(names, base) {
			t.Errorf("%s uses %s, which cimstream does not export", where, tok)
		}
		found++
	}
	return found
}

func TestDashboardUsesOnlyExportedMetrics(t *testing.T) {
	names := exported(t)
	data, err := os.ReadFile("grafana/cimstream.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	var titles []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if checkExpr(t, "panel "+p.Title, tg.Expr, names) == 0 {
				t.Errorf("panel %q: query %q names no metric", p.Title, tg.Expr)
			}
		}
		titles = append(titles, strings.ToLower(p.Title))
	}
	all := strings.Join(titles, "|")
	for _, must := range []string{"consumed", "produced", "dead letters", "latency", "lag", "sessions", "notifications", "client errors"} {
		if !strings.Contains(all, must) {
			t.Errorf("the dashboard has no panel about %s", must)
		}
	}
}

const rulesPath = "helm/cimstream/files/alerts.yml"

type rule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

// rulesFile reads the alert rules, the one copy the chart renders and promtool tests.
func rulesFile(t *testing.T) ruleFile {
	t.Helper()
	data, err := os.ReadFile(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	var rules ruleFile
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatal(err)
	}
	return rules
}

// TestAlertRules: every rule names only exported metrics, selects by the label the chart sets (not by
// job), carries a summary, a description and an absolute runbook link to its section of
// docs/operations.md, passes promtool, and has a promtool test where it fires and one where it is silent.
func TestAlertRules(t *testing.T) {
	names := append(exported(t), "up")
	ops, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	var alerts []string
	for _, g := range rulesFile(t).Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			checkExpr(t, "alert "+r.Alert, r.Expr, names)
			if !strings.Contains(string(ops), "\n### "+r.Alert+"\n") {
				t.Errorf("alert %s has no runbook section in docs/operations.md", r.Alert)
			}
			if want := defaultRunbooks + "#" + strings.ToLower(r.Alert); r.Annotations["runbook_url"] != want {
				t.Errorf("alert %s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" || r.Labels["severity"] == "" {
				t.Errorf("alert %s needs a summary, a description and a severity", r.Alert)
			}
			if strings.Contains(r.Expr, "job=") || strings.Contains(r.Expr, "label_replace") {
				t.Errorf("alert %s: select by app_kubernetes_io_name, not job, and without label_replace: %s", r.Alert, r.Expr)
			}
			if strings.Contains(r.Expr, "up{") && !strings.Contains(r.Expr, `up{app_kubernetes_io_name="cimstream"}`) {
				t.Errorf("alert %s: up must be selected by app_kubernetes_io_name", r.Alert)
			}
		}
	}
	if len(alerts) < 10 {
		t.Fatalf("only %d alerts", len(alerts))
	}
	for _, must := range []string{"absent(", "cimstream_end_to_end_latency_seconds_bucket"} {
		found := false
		for _, g := range rulesFile(t).Groups {
			for _, r := range g.Rules {
				found = found || strings.Contains(r.Expr, must)
			}
		}
		if !found {
			t.Errorf("no rule uses %s", must)
		}
	}

	// Each rule fires in one test and stays silent in another (not merely before its for: elapsed).
	data, err := os.ReadFile("prometheus/alerts_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	var tests struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			Name  string `yaml:"name"`
			Cases []struct {
				Alert     string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(data, &tests); err != nil {
		t.Fatal(err)
	}
	if len(tests.RuleFiles) != 1 || filepath.Join("prometheus", tests.RuleFiles[0]) != filepath.Clean(rulesPath) {
		t.Errorf("alerts_test.yml must test %s, tests %v", rulesPath, tests.RuleFiles)
	}
	fires, silent := map[string]int{}, map[string]int{}
	for _, tc := range tests.Tests {
		firesHere := map[string]bool{}
		for _, c := range tc.Cases {
			if len(c.ExpAlerts) > 0 {
				firesHere[c.Alert] = true
			}
		}
		for _, c := range tc.Cases {
			if len(c.ExpAlerts) > 0 {
				fires[c.Alert]++
			} else if !firesHere[c.Alert] {
				silent[c.Alert]++
			}
		}
	}
	for _, a := range alerts {
		if fires[a] == 0 || silent[a] == 0 {
			t.Errorf("alert %s: %d promtool tests where it fires, %d where it stays silent; want at least one each", a, fires[a], silent[a])
		}
	}
	for _, args := range [][]string{{"check", "rules", rulesPath}, {"test", "rules", "prometheus/alerts_test.yml"}} {
		out, err := exec.Command("promtool", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

func TestEveryMetricIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range exported(t) {
		if strings.HasPrefix(name, "cimstream_") && !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/metrics.md does not describe %s", name)
		}
	}
}
