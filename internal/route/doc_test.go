package route_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/route"
)

// docExample is a YAML block of docs/outbound.md and the results table that follows it.
type docExample struct {
	yaml string
	rows [][]string // serviceIdentifier, senderType, bodyType, destinations
}

// docExamples reads every ```yaml block of the document and the first "| serviceIdentifier |" table after it.
func docExamples(t *testing.T, doc string) []docExample {
	t.Helper()
	var out []docExample
	lines := strings.Split(doc, "\n")
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "```yaml" {
			continue
		}
		var ex docExample
		j := i + 1
		for ; j < len(lines) && strings.TrimSpace(lines[j]) != "```"; j++ {
			ex.yaml += lines[j] + "\n"
		}
		for ; j < len(lines) && !strings.HasPrefix(lines[j], "```yaml"); j++ {
			if !strings.HasPrefix(lines[j], "| serviceIdentifier |") {
				continue
			}
			for j += 2; j < len(lines) && strings.HasPrefix(lines[j], "|"); j++ {
				cells := strings.Split(strings.Trim(lines[j], "|"), "|")
				for k := range cells {
					cells[k] = strings.TrimSpace(strings.ReplaceAll(cells[k], "`", ""))
				}
				if len(cells) != 4 {
					t.Fatalf("docs/outbound.md line %d: want 4 cells, got %q", j+1, lines[j])
				}
				ex.rows = append(ex.rows, cells)
			}
			break
		}
		out = append(out, ex)
		i = j - 1
	}
	return out
}

// TestOutboundDocExamples loads every YAML example of docs/outbound.md through the config package and checks
// the routing the document states for it.
func TestOutboundDocExamples(t *testing.T) {
	_, here, _, _ := runtime.Caller(0)
	doc, err := os.ReadFile(filepath.Join(filepath.Dir(here), "..", "..", "docs", "outbound.md"))
	if err != nil {
		t.Fatal(err)
	}
	examples := docExamples(t, string(doc))
	if len(examples) == 0 {
		t.Fatal("docs/outbound.md has no yaml example")
	}
	for n, ex := range examples {
		if len(ex.rows) == 0 {
			t.Errorf("yaml example %d of docs/outbound.md has no results table after it", n)
			continue
		}
		path := filepath.Join(t.TempDir(), "example.yaml")
		if err := os.WriteFile(path, []byte(ex.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path, nil, nil)
		if err != nil {
			t.Fatalf("yaml example %d does not load: %v", n, err)
		}
		r := route.New(cfg.Outbound.Routes, cfg.ChannelMap())
		for _, row := range ex.rows {
			got := strings.Join(r.Destinations(route.Message{ServiceIdentifier: row[0], SenderType: row[1], BodyType: row[2]}), ", ")
			if got == "" {
				got = "FAILED/404"
			}
			if got != row[3] {
				t.Errorf("example %d, %s %s %s: routed to %q, the document says %q", n, row[0], row[1], row[2], got, row[3])
			}
		}
	}
}
