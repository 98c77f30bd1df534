package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

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

func newValidateCommand() *cobra.Command {
	var direction, format string
	var maxBytes int
	cmd := &cobra.Command{
		Use:   "validate [FILE|-]...",
		Short: "Validate CIM messages against the contract",
		Long: `Validate CIM messages as the service would. A file (or standard input, -, the default) holds one JSON
message, a JSON array of messages, or one message per line.

Exit status: 0 all valid, 1 some invalid, 2 usage or I/O error.`,
		Example: `  cimstream validate msgs.ndjson
  cimstream validate --direction outbound reply.json
  cimstream validate msgs.ndjson --format json`,
		RunE: func(cmd *cobra.Command, sources []string) error {
			dir, ok := cim.ParseDirection(direction)
			if !ok {
				return usagef("--direction must be inbound or outbound, not %q", direction)
			}
			if format != "json" && format != "text" {
				return usagef("--format must be json or text, not %q", format)
			}
			if len(sources) == 0 {
				sources = []string{"-"}
			}
			return validateSources(sources, dir, format, cim.Limits{MaxBytes: maxBytes, MaxDepth: cim.DefaultMaxDepth},
				cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&direction, "direction", "inbound", "inbound (from connectors) or outbound (from the CCM)")
	f.StringVar(&format, "format", "text", "json (one line per message) or text (one line per violation)")
	f.IntVar(&maxBytes, "max-bytes", cim.DefaultMaxBytes, "largest message accepted, as in the service")
	_ = cmd.RegisterFlagCompletionFunc("direction", fixedCompletion("inbound", "outbound"))
	_ = cmd.RegisterFlagCompletionFunc("format", fixedCompletion("text", "json"))
	return cmd
}

func validateSources(sources []string, dir cim.Direction, format string, limits cim.Limits, stdin io.Reader, stdout, stderr io.Writer) error {
	total, invalid := 0, 0
	enc := json.NewEncoder(stdout)
	for _, src := range sources {
		data, err := readSource(src, stdin)
		if err != nil {
			return exitError{code: 2, err: err}
		}
		for i, msg := range splitMessages(data) {
			r := validateOne(src, i, msg, dir, limits)
			total++
			if !r.Valid {
				invalid++
			}
			if format == "json" {
				if err := enc.Encode(r); err != nil {
					return exitError{code: 2, err: err}
				}
			} else {
				writeText(stdout, r)
			}
		}
	}
	if format == "text" {
		fmt.Fprintf(stderr, "%d message(s), %d invalid\n", total, invalid)
	}
	if invalid > 0 {
		return silentExit(1)
	}
	return nil
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
