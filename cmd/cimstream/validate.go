package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/cimstream/cimstream/pkg/cim"
)

// validateResult is one line of `cimstream validate --format json`.
type validateResult struct {
	Source     string          `json:"source"`
	Index      int             `json:"index"`
	ID         string          `json:"id"`
	Valid      bool            `json:"valid"`
	Violations []cim.Violation `json:"violations"`
}

func validateCommand(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cimstream validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	direction := fs.String("direction", "inbound", "inbound (from connectors) or outbound (from the CCM)")
	format := fs.String("format", "text", "json (one line per message) or text (one line per violation)")
	maxBytes := fs.Int("max-bytes", cim.DefaultMaxBytes, "largest message accepted, as in the service")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: cimstream validate [--direction inbound|outbound] [--format json|text] [--max-bytes N] [FILE|-]...\n"+
			"A file (or standard input, -) holds one JSON message, a JSON array of messages, or one message per line.\n"+
			"Exit status: 0 all valid, 1 some invalid, 2 usage or I/O error.\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	dir, ok := cim.ParseDirection(*direction)
	if !ok {
		fmt.Fprintf(stderr, "cimstream validate: --direction must be inbound or outbound, not %q\n", *direction)
		return 2
	}
	if *format != "json" && *format != "text" {
		fmt.Fprintf(stderr, "cimstream validate: --format must be json or text, not %q\n", *format)
		return 2
	}
	sources := fs.Args()
	if len(sources) == 0 {
		sources = []string{"-"}
	}
	limits := cim.Limits{MaxBytes: *maxBytes, MaxDepth: cim.DefaultMaxDepth}
	total, invalid := 0, 0
	enc := json.NewEncoder(stdout)
	for _, src := range sources {
		data, err := readSource(src, stdin)
		if err != nil {
			fmt.Fprintf(stderr, "cimstream validate: %v\n", err)
			return 2
		}
		for i, msg := range splitMessages(data) {
			r := validateOne(src, i, msg, dir, limits)
			total++
			if !r.Valid {
				invalid++
			}
			if *format == "json" {
				if err := enc.Encode(r); err != nil {
					fmt.Fprintf(stderr, "cimstream validate: %v\n", err)
					return 2
				}
			} else {
				writeText(stdout, r)
			}
		}
	}
	if *format == "text" {
		fmt.Fprintf(stderr, "%d message(s), %d invalid\n", total, invalid)
	}
	if invalid > 0 {
		return 1
	}
	return 0
}

func readSource(src string, stdin io.Reader) ([]byte, error) {
	if src == "-" {
		return io.ReadAll(stdin)
	}
	return os.ReadFile(src)
}

func validateOne(src string, index int, data []byte, dir cim.Direction, limits cim.Limits) validateResult {
	r := validateResult{Source: src, Index: index, Violations: []cim.Violation{}}
	m, err := cim.DecodeLimits(data, limits)
	if err != nil {
		r.Violations = append(r.Violations, err.(*cim.DecodeError).Violation)
		return r
	}
	r.ID = m.ID()
	if vs := cim.Validate(m, dir); len(vs) > 0 {
		r.Violations = vs
		return r
	}
	r.Valid = true
	return r
}

// splitMessages finds the messages in a source: a JSON array of messages, one message, or one message
// per line (NDJSON). Anything unreadable becomes a single entry, which then fails as malformed.
func splitMessages(data []byte) [][]byte {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return [][]byte{trimmed}
	}
	if trimmed[0] == '[' {
		var elems []json.RawMessage
		if err := json.Unmarshal(trimmed, &elems); err == nil {
			out := make([][]byte, len(elems))
			for i, e := range elems {
				out[i] = e
			}
			return out
		}
		return [][]byte{trimmed}
	}
	if json.Valid(trimmed) {
		return [][]byte{trimmed}
	}
	lines := bytes.Split(trimmed, []byte("\n"))
	if first := bytes.TrimSpace(lines[0]); len(lines) > 1 && json.Valid(first) {
		var out [][]byte
		for _, l := range lines {
			if l = bytes.TrimSpace(l); len(l) > 0 {
				out = append(out, l)
			}
		}
		return out
	}
	return [][]byte{trimmed}
}

func writeText(w io.Writer, r validateResult) {
	where := fmt.Sprintf("[%s#%d", r.Source, r.Index)
	if r.ID != "" {
		where += " id=" + r.ID
	}
	where += "]"
	if r.Valid {
		fmt.Fprintf(w, "%s valid\n", where)
		return
	}
	for _, v := range r.Violations {
		path := v.Path
		if path == "" {
			path = "(message)"
		}
		fmt.Fprintf(w, "%s: %s: %s %s\n", path, v.Code, v.Message, where)
	}
}
