// Package deployments_test checks the operator files against the service: the dashboard and the alert
// rules may only use metrics cimstream exports, and the rules pass promtool.
package deployments_test

import (
	"encoding/json"
	"os"
	"os/exec"
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

func TestAlertRules(t *testing.T) {
	names := append(exported(t), "up")
	data, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatal(err)
	}
	ops, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			count++
			checkExpr(t, "alert "+r.Alert, r.Expr, names)
			if !strings.Contains(string(ops), "### "+r.Alert) {
				t.Errorf("alert %s has no runbook section in docs/operations.md", r.Alert)
			}
		}
	}
	if count < 6 {
		t.Fatalf("only %d alerts", count)
	}
	for _, args := range [][]string{{"check", "rules", "prometheus/alerts.yml"}, {"test", "rules", "prometheus/alerts_test.yml"}} {
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
