package cim_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cimstream/cimstream/pkg/cim"
)

// corpusCase is one entry of testdata/corpus/*.json: a message (or raw text), a direction, and the
// violations expected (none for valid.json).
type corpusCase struct {
	Name       string          `json:"name"`
	Direction  string          `json:"direction"`
	Message    json.RawMessage `json:"message"`
	Raw        *string         `json:"raw"`
	Violations []struct {
		Path string `json:"path"`
		Code string `json:"code"`
	} `json:"violations"`
	file string
}

func (c corpusCase) bytes() []byte {
	if c.Raw != nil {
		return []byte(*c.Raw)
	}
	return c.Message
}

func (c corpusCase) direction(t *testing.T) cim.Direction {
	d, ok := cim.ParseDirection(c.Direction)
	if !ok {
		t.Fatalf("%s: bad direction %q", c.Name, c.Direction)
	}
	return d
}

func loadCorpus(t testing.TB) []corpusCase {
	t.Helper()
	files, err := filepath.Glob("testdata/corpus/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus files: %v", err)
	}
	var all []corpusCase
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cases []corpusCase
		if err := json.Unmarshal(data, &cases); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for i := range cases {
			cases[i].file = filepath.Base(f)
		}
		all = append(all, cases...)
	}
	return all
}

// check decodes and validates, returning "path code" strings, sorted.
func check(data []byte, dir cim.Direction) []string {
	var got []string
	m, err := cim.Decode(data)
	if err != nil {
		de := err.(*cim.DecodeError)
		return []string{de.Violation.Path + " " + de.Violation.Code}
	}
	for _, v := range cim.Validate(m, dir) {
		got = append(got, v.Path+" "+v.Code)
	}
	sort.Strings(got)
	return got
}

func TestCorpus(t *testing.T) {
	cases := loadCorpus(t)
	valid, invalid := 0, 0
	for _, c := range cases {
		t.Run(c.file+"/"+c.Name, func(t *testing.T) {
			var want []string
			for _, v := range c.Violations {
				want = append(want, v.Path+" "+v.Code)
			}
			sort.Strings(want)
			got := check(c.bytes(), c.direction(t))
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("violations\n got: %q\nwant: %q", got, want)
			}
		})
		if len(c.Violations) == 0 {
			valid++
		} else {
			invalid++
		}
	}
	// The corpus must hold a valid message of every body type in both directions.
	seen := map[string]bool{}
	for _, c := range cases {
		if len(c.Violations) == 0 && c.Raw == nil {
			var m struct {
				Body struct {
					Type string `json:"type"`
				} `json:"body"`
			}
			_ = json.Unmarshal(c.Message, &m)
			seen[c.Direction+" "+m.Body.Type] = true
		}
	}
	for _, bt := range cim.BodyTypes {
		for _, d := range []string{"inbound", "outbound"} {
			if !seen[d+" "+bt] {
				t.Errorf("corpus lacks a valid %s %s message", d, bt)
			}
		}
	}
	t.Logf("%d valid and %d invalid cases", valid, invalid)
}

func TestViolationsHaveSentences(t *testing.T) {
	for _, c := range loadCorpus(t) {
		m, err := cim.Decode(c.bytes())
		if err != nil {
			if msg := err.(*cim.DecodeError).Violation.Message; len(msg) < 10 {
				t.Errorf("%s: decode error without a sentence: %q", c.Name, msg)
			}
			continue
		}
		for _, v := range cim.Validate(m, c.direction(t)) {
			if len(v.Message) < 8 {
				t.Errorf("%s: %s has no useful sentence: %q", c.Name, v.Path, v.Message)
			}
		}
	}
}
