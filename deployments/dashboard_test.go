package deployments_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type dashboard struct {
	Panels []struct {
		Title      string `json:"title"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		FieldConfig struct {
			Defaults struct {
				Unit string `json:"unit"`
			} `json:"defaults"`
			Overrides []json.RawMessage `json:"overrides"`
		} `json:"fieldConfig"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile("grafana/cimstream.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	return d
}

// grafanaVars are replaced by what Grafana would send, so promtool can parse the queries.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$job", ".*", "$namespace", ".*", "$instance", ".*")

var labelValues = regexp.MustCompile(`^label_values\((.+), *([a-z_]+)\)$`)

// TestDashboardQueriesParse has promtool parse every panel query and the metric selector of every variable
// query (as recording rules: promtool check rules parses each expression), and checks that variable queries
// name only exported metrics.
func TestDashboardQueriesParse(t *testing.T) {
	d := readDashboard(t)
	names := exported(t)
	type rec struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rec
	add := func(what, expr string) {
		e := grafanaVars.Replace(expr)
		if strings.Contains(e, "$") {
			t.Errorf("%s: an unknown variable in %s", what, expr)
		}
		rules = append(rules, rec{Record: fmt.Sprintf("dashboard:query_%d", len(rules)), Expr: e})
	}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			add("panel "+p.Title, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, v.Definition)
			continue
		}
		if checkExpr(t, "variable "+v.Name, m[1], names) == 0 {
			t.Errorf("variable %s names no metric", v.Name)
		}
		add("variable "+v.Name, m[1])
	}
	data, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("promtool", "check", "rules", file).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool cannot parse the dashboard's queries: %v\n%s", err, out)
	}
	if want := fmt.Sprintf("SUCCESS: %d rules found", len(rules)); !strings.Contains(string(out), want) {
		t.Errorf("promtool: want %q\n%s", want, out)
	}
}

// TestDashboardVariables: job, namespace and instance variables exist, every variable is used, and every
// query is narrowed by all three, so one dashboard serves a fleet.
func TestDashboardVariables(t *testing.T) {
	d := readDashboard(t)
	var all []string
	for _, p := range d.Panels {
		all = append(all, p.Datasource.UID)
		for _, tg := range p.Targets {
			all = append(all, tg.Expr)
			for _, v := range []string{"job", "namespace", "instance"} {
				if !strings.Contains(tg.Expr, `=~"$`+v+`"`) {
					t.Errorf("panel %q query %s is not narrowed by $%s", p.Title, tg.RefID, v)
				}
			}
		}
	}
	for _, v := range d.Templating.List {
		all = append(all, v.Definition, v.Datasource.UID)
	}
	used := strings.Join(all, "\n")
	have := map[string]bool{}
	for _, v := range d.Templating.List {
		have[v.Name] = true
		if !strings.Contains(used, "$"+v.Name+`"`) && !strings.Contains(used, "${"+v.Name+"}") {
			t.Errorf("variable %s is not used", v.Name)
		}
	}
	for _, v := range []string{"datasource", "job", "namespace", "instance"} {
		if !have[v] {
			t.Errorf("no %s variable", v)
		}
	}
}

// quantity says what an expression measures, to check a panel's unit against its queries.
func quantity(expr string) string {
	switch {
	case strings.Contains(expr, "histogram_quantile(") && strings.Contains(expr, "_seconds_bucket"):
		return "seconds"
	case strings.Contains(expr, "rate(") && strings.Contains(expr, "_bytes_total"):
		return "bytes per second"
	case strings.Contains(expr, "rate(") && strings.Contains(expr, "_seconds_total"):
		return "seconds per second" // a share of time, e.g. throttled
	case strings.HasPrefix(expr, "60 * ") && strings.Contains(expr, "rate("):
		return "per minute"
	case strings.Contains(expr, "rate("):
		return "per second"
	case regexp.MustCompile(`\b[a-z_]+_bytes\b`).MatchString(expr):
		return "bytes"
	case regexp.MustCompile(`\b[a-z_]+_seconds\b`).MatchString(expr):
		return "seconds" // a gauge of seconds (a histogram's _seconds_bucket does not match \b here)
	default:
		return "count"
	}
}

var unitsFor = map[string][]string{
	"seconds":            {"s", "ms"},
	"per second":         {"ops", "reqps", "cps"},
	"per minute":         {"opm", "cpm"},
	"bytes per second":   {"Bps", "binBps"},
	"seconds per second": {"percentunit"},
	"bytes":              {"bytes", "decbytes"},
	"count":              {"short", "none"},
}

// TestDashboardPanelUnits: each panel shows one quantity, in a unit that fits it, with no per-series
// unit overrides.
func TestDashboardPanelUnits(t *testing.T) {
	for _, p := range readDashboard(t).Panels {
		kinds := map[string]bool{}
		for _, tg := range p.Targets {
			kinds[quantity(tg.Expr)] = true
		}
		if len(kinds) != 1 {
			t.Errorf("panel %q mixes %v", p.Title, kinds)
			continue
		}
		for k := range kinds {
			ok := false
			for _, u := range unitsFor[k] {
				ok = ok || p.FieldConfig.Defaults.Unit == u
			}
			if !ok {
				t.Errorf("panel %q shows %s in unit %q, want one of %v", p.Title, k, p.FieldConfig.Defaults.Unit, unitsFor[k])
			}
		}
		for _, o := range p.FieldConfig.Overrides {
			if strings.Contains(string(o), `"unit"`) {
				t.Errorf("panel %q overrides the unit of some series", p.Title)
			}
		}
	}
}
