package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeMessages(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// pretty is validInbound as `jq .` prints it.
const pretty = `{
  "id": "m-p",
  "header": {
    "sender": {"id": "c", "type": "CONNECTOR", "senderName": "W"},
    "channelData": {"serviceIdentifier": "s", "channelCustomerIdentifier": "c"}
  },
  "body": {"type": "PLAIN", "markdownText": "hi"}
}`

func TestValidateGarbageFirstLineKeepsTheRest(t *testing.T) {
	code, out, errOut := runCLI(t, "garbage\n"+validInbound+"\n"+invalidInbound+"\n", "validate", "--format", "json")
	lines := jsonLines(t, out)
	if code != 1 || len(lines) != 3 {
		t.Fatalf("exit %d, %d results:\n%s%s", code, len(lines), out, errOut)
	}
	if lines[0].Valid || lines[0].Violations[0].Code != "malformed" || lines[0].Line != 1 {
		t.Errorf("line 1: %+v", lines[0])
	}
	if !lines[1].Valid || lines[1].Line != 2 || lines[1].ID != "m-1" || lines[2].Valid || lines[2].Line != 3 {
		t.Errorf("lines 2-3: %+v %+v", lines[1], lines[2])
	}
	if !strings.Contains(errOut, "3 message(s), 2 invalid") {
		t.Errorf("summary: %q", errOut)
	}
}

func TestValidateConcatenatedPrettyObjects(t *testing.T) {
	code, out, errOut := runCLI(t, pretty+"\n"+pretty+"\n", "validate")
	if code != 0 || !strings.Contains(errOut, "2 message(s), 0 invalid") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if out != "-:1: valid (id=m-p)\n-:9: valid (id=m-p)\n" {
		t.Errorf("output:\n%s", out)
	}
}

func TestValidateEmptyFileIsNoMessages(t *testing.T) {
	empty := writeMessages(t, "empty.ndjson", "")
	code, out, errOut := runCLI(t, "", "validate", empty)
	if code != 0 || out != "" || !strings.Contains(errOut, "0 message(s), 0 invalid") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestValidateMissingFileStillChecksTheOthers(t *testing.T) {
	good := writeMessages(t, "good.ndjson", validInbound+"\n")
	bad := writeMessages(t, "bad.ndjson", invalidInbound+"\n")
	missing := filepath.Join(t.TempDir(), "missing.ndjson")
	code, out, errOut := runCLI(t, "", "validate", good, missing, bad)
	if code != 2 {
		t.Fatalf("exit %d, want 2 (a file could not be read)", code)
	}
	if !strings.Contains(out, missing+":0: (file): unreadable: ") || !strings.Contains(out, "no such file") {
		t.Errorf("missing file not reported:\n%s", out)
	}
	if !strings.Contains(out, good+":1: valid") || !strings.Contains(out, bad+":1: header.channelData: required") {
		t.Errorf("the other files were not checked:\n%s", out)
	}
	if !strings.Contains(errOut, "2 message(s), 1 invalid, 1 file(s) unreadable") {
		t.Errorf("summary does not cover all: %q", errOut)
	}
}

func TestValidateEveryFindingHasFileAndLine(t *testing.T) {
	src := writeMessages(t, "m.ndjson", "\n"+validInbound+"\nnot json\n\n"+invalidInbound+"\n")
	code, out, _ := runCLI(t, "", "validate", src)
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	want := []string{src + ":2: valid (id=m-1)", src + ":3: (message): malformed:", src + ":5: header.channelData: required:"}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(line, src+":") {
			t.Errorf("finding without file:line: %q", line)
		}
	}
}

func TestValidateQuietPrintsFailuresOnly(t *testing.T) {
	code, out, errOut := runCLI(t, validInbound+"\n"+invalidInbound+"\n", "validate", "--quiet")
	if code != 1 || strings.Contains(out, "valid (id=m-1)") || !strings.Contains(out, "-:2: header.channelData") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if !strings.Contains(errOut, "2 message(s), 1 invalid") {
		t.Errorf("a failing run keeps its count: %q", errOut)
	}
	code, out, errOut = runCLI(t, validInbound+"\n", "validate", "-q", "--format", "json")
	if code != 0 || out != "" || errOut != "" {
		t.Fatalf("all valid and quiet: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestValidateJSONFormatMeaning: --format json keeps its fields and their meaning (index 0-based per
// source), with the line added.
func TestValidateJSONFormatMeaning(t *testing.T) {
	a := writeMessages(t, "a.ndjson", validInbound+"\n\n"+invalidInbound+"\n")
	b := writeMessages(t, "b.json", "["+validInbound+"]")
	_, out, _ := runCLI(t, "", "validate", "--format", "json", a, b)
	lines := jsonLines(t, out)
	if len(lines) != 3 {
		t.Fatalf("%d lines:\n%s", len(lines), out)
	}
	want := []validateResult{{Source: a, Index: 0, Line: 1, ID: "m-1", Valid: true}, {Source: a, Index: 1, Line: 3, ID: "m-2"}, {Source: b, Index: 0, Line: 1, ID: "m-1", Valid: true}}
	for i, w := range want {
		g := lines[i]
		if g.Source != w.Source || g.Index != w.Index || g.Line != w.Line || g.ID != w.ID || g.Valid != w.Valid {
			t.Errorf("line %d: %+v, want %+v", i, g, w)
		}
	}
	if !strings.Contains(out, `"violations":[]`) {
		t.Error("a valid message keeps an empty violations list")
	}
}

func TestValidateGitHubAnnotations(t *testing.T) {
	src := writeMessages(t, "m.ndjson", validInbound+"\n"+invalidInbound+"\n")
	code, out, _ := runCLI(t, "", "validate", "--format", "github", src)
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	want := "::error file=" + src + ",line=2,title=cimstream validate%3A required::header.channelData: "
	if !strings.HasPrefix(out, want) || strings.Contains(out, "line=1") {
		t.Errorf("annotations:\n%s\nwant prefix %s", out, want)
	}
}

// TestValidateTakesTheServiceLimitFromTheConfiguration: without --max-bytes, the limit is
// inbound.maxMessageBytes of the configuration (--set, --config, environment), as in the service.
func TestValidateTakesTheServiceLimitFromTheConfiguration(t *testing.T) {
	big := `{"id":"m-big","header":{"sender":{"id":"c","type":"CONNECTOR","senderName":"W"},"channelData":{"serviceIdentifier":"s","channelCustomerIdentifier":"c"}},"body":{"type":"PLAIN","markdownText":"` + strings.Repeat("x", 2000) + `"}}`
	code, out, _ := runCLI(t, big, "validate", "--set", "inbound.maxMessageBytes=1500", "--set", "kafka.producer.batchBytes=1114112")
	if code != 1 || !strings.Contains(out, "too_large") || !strings.Contains(out, "the limit is 1500") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if code, out, _ := runCLI(t, big, "validate"); code != 0 {
		t.Fatalf("default limit: exit %d\n%s", code, out)
	}
	if code, _, errOut := runCLI(t, big, "validate", "--set", "inbound.maxMessageBytes=nope"); code != 1 || !strings.Contains(errOut, "inbound.maxMessageBytes") {
		t.Fatalf("bad configuration: exit %d %s", code, errOut)
	}
}

// TestValidateRecoversWithoutLosingOrInventing: through validate, a file that starts with a byte order
// mark, holds a truncated line followed by an indented message, a message laid out with indent=0, and an
// array with a string cut at the end of a line: every valid message is found, each broken one is one
// finding, and every finding has its file and 1-based line.
func TestValidateRecoversWithoutLosingOrInventing(t *testing.T) {
	var m any
	if err := json.Unmarshal([]byte(validInbound), &m); err != nil {
		t.Fatal(err)
	}
	flat, err := json.MarshalIndent(m, "", "") // Python's json.dumps(m, indent=0)
	if err != nil {
		t.Fatal(err)
	}
	flatLines := strings.Count(string(flat), "\n") + 1
	content := "\uFEFF" + validInbound + "\n" + // 1
		`{"id":"m-t","header":{"sender":` + "\n" + // 2: cut short
		"  " + validInbound + "\n" + // 3
		string(flat) + "\n" + // 4
		"[\n" +
		"  " + validInbound + ",\n" +
		`  {"id": "cut` + "\n" +
		"  },\n" +
		"  " + validInbound + "\n" +
		"]\n"
	arrayAt := 4 + flatLines
	src := writeMessages(t, "mixed.ndjson", content)
	code, out, errOut := runCLI(t, "", "validate", "--format", "json", src)
	if code != 1 || !strings.Contains(errOut, "7 message(s), 2 invalid") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	want := []struct {
		line  int
		valid bool
	}{{1, true}, {2, false}, {3, true}, {4, true}, {arrayAt + 1, true}, {arrayAt + 2, false}, {arrayAt + 4, true}}
	lines := jsonLines(t, out)
	if len(lines) != len(want) {
		t.Fatalf("%d results, want %d:\n%s", len(lines), len(want), out)
	}
	for i, w := range want {
		if g := lines[i]; g.Line != w.line || g.Valid != w.valid || (!g.Valid && g.Violations[0].Code != "malformed") {
			t.Errorf("result %d: line %d valid %v %+v, want line %d valid %v", i, g.Line, g.Valid, g.Violations, w.line, w.valid)
		}
	}
	_, text, _ := runCLI(t, "", "validate", src)
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if !strings.HasPrefix(line, src+":") {
			t.Errorf("finding without file:line: %q", line)
		}
	}
}
