package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func jsonLines(t *testing.T, s string) []validateResult {
	t.Helper()
	var out []validateResult
	if strings.TrimSpace(s) == "" {
		return nil
	}
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		var r validateResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("not a JSON line: %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

const (
	validInbound   = `{"id":"m-1","header":{"sender":{"id":"c","type":"CONNECTOR","senderName":"W"},"channelData":{"serviceIdentifier":"s","channelCustomerIdentifier":"c"}},"body":{"type":"PLAIN","markdownText":"hi"}}`
	invalidInbound = `{"id":"m-2","header":{"sender":{"id":"c","type":"CONNECTOR","senderName":"W"}},"body":{"type":"PLAIN"}}`
)

func TestValidateJSONFormatShapes(t *testing.T) {
	cases := map[string]struct {
		input  string
		valid  []bool
		exit   int
		first  string // first violation code of the first invalid message
		header string
	}{
		"one message":      {input: validInbound, valid: []bool{true}, exit: 0},
		"array":            {input: "[" + validInbound + "," + invalidInbound + "]", valid: []bool{true, false}, exit: 1, first: "required"},
		"ndjson":           {input: validInbound + "\n\n" + invalidInbound + "\nnot json\n", valid: []bool{true, false, false}, exit: 1, first: "required"},
		"garbage":          {input: "\x00\x01garbage", valid: []bool{false}, exit: 1, first: "malformed"},
		"empty input":      {input: "", valid: nil, exit: 0},
		"array of numbers": {input: "[1]", valid: []bool{false}, exit: 1, first: "malformed"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			code, out, _ := runCLI(t, c.input, "validate", "--format", "json")
			if code != c.exit {
				t.Fatalf("exit %d, want %d", code, c.exit)
			}
			lines := jsonLines(t, out)
			if len(lines) != len(c.valid) {
				t.Fatalf("%d lines, want %d: %s", len(lines), len(c.valid), out)
			}
			firstInvalid := true
			for i, r := range lines {
				if r.Valid != c.valid[i] || r.Index != i || r.Source != "-" {
					t.Errorf("line %d: %+v", i, r)
				}
				if !r.Valid && firstInvalid {
					firstInvalid = false
					if len(r.Violations) == 0 || r.Violations[0].Code != c.first {
						t.Errorf("first violation %+v, want code %s", r.Violations, c.first)
					}
				}
				if r.Valid && len(r.Violations) != 0 {
					t.Errorf("valid line with violations: %+v", r)
				}
			}
		})
	}
}

func TestValidateFilesTextAndDirection(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	if err := os.WriteFile(good, []byte(validInbound), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := runCLI(t, "", "validate", good); code != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("inbound: exit %d, %s", code, out)
	}
	// The same message lacks the ids and customer the outbound direction requires.
	code, out, _ := runCLI(t, "", "validate", "--direction", "outbound", good)
	if code != 1 {
		t.Fatalf("outbound exit %d", code)
	}
	for _, path := range []string{"header.conversationId: required", "header.channelSessionId: required", "header.customer: required"} {
		if !strings.Contains(out, path) {
			t.Errorf("text output lacks %q:\n%s", path, out)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(line, good+":1: header.") {
			t.Errorf("text lines start with file:line: and the path: %q", line)
		}
	}
}

func TestValidateLimitsAndErrors(t *testing.T) {
	code, out, _ := runCLI(t, validInbound, "validate", "--format", "json", "--max-bytes", "100")
	if code != 1 || jsonLines(t, out)[0].Violations[0].Code != "too_large" {
		t.Fatalf("size limit: exit %d %s", code, out)
	}
	deep := `{"id":"x","header":` + strings.Repeat(`{"a":`, 70) + "1" + strings.Repeat("}", 70) + `,"body":{}}`
	if code, out, _ := runCLI(t, deep, "validate", "--format", "json"); code != 1 || !strings.Contains(out, `"too_deep"`) {
		t.Fatalf("depth limit: exit %d %s", code, out)
	}
	if code, out, _ := runCLI(t, "", "validate", "/nonexistent/file.json"); code != 2 || !strings.Contains(out, "file.json:0:") {
		t.Fatalf("missing file: exit %d %s", code, out)
	}
	if code, _, errOut := runCLI(t, "", "validate", "--direction", "sideways"); code != 2 || !strings.Contains(errOut, "--direction") {
		t.Fatalf("bad direction: exit %d %s", code, errOut)
	}
	if code, _, _ := runCLI(t, "", "validate", "--format", "xml"); code != 2 {
		t.Fatalf("bad format: exit %d", code)
	}
}

// TestValidateCorpusFiles runs the CLI over the shared corpus: every valid case passes, every invalid
// one fails, as the library says.
func TestValidateCorpusFiles(t *testing.T) {
	data, err := os.ReadFile("../../pkg/cim/testdata/corpus/valid.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Direction string          `json:"direction"`
		Message   json.RawMessage `json:"message"`
	}
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	var in, out bytes.Buffer
	for _, c := range cases {
		buf := &in
		if c.Direction == "outbound" {
			buf = &out
		}
		if err := json.Compact(buf, c.Message); err != nil { // NDJSON: one message per line
			t.Fatal(err)
		}
		buf.WriteByte('\n')
	}
	for dir, buf := range map[string]*bytes.Buffer{"inbound": &in, "outbound": &out} {
		code, stdout, _ := runCLI(t, buf.String(), "validate", "--format", "json", "--direction", dir)
		if code != 0 {
			t.Errorf("%s corpus: exit %d\n%s", dir, code, stdout)
		}
		if n := len(jsonLines(t, stdout)); n < 20 {
			t.Errorf("%s corpus: only %d results", dir, n)
		}
	}
}

func TestConfigErrorsAreOneLine(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("kafka:\n  brokers: [nohost]\n  producer: {compression: brotli}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "", "config", "print", "--config", bad)
	if code != 1 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, key := range []string{"kafka.brokers", "kafka.producer.compression"} {
		if !strings.Contains(errOut, key) {
			t.Errorf("error does not name %s: %s", key, errOut)
		}
	}
	if code, _, _ := runCLI(t, "", "nonsense"); code != 2 {
		t.Errorf("unknown command exit %d", code)
	}
}
