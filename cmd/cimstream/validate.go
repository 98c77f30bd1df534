package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/cimstream/cimstream/internal/jsonseq"
	"github.com/cimstream/cimstream/pkg/cim"
)

// validateResult is one line of `cimstream validate --format json`.
type validateResult struct {
	Source string `json:"source"`
	// Index is the message's 0-based position in its source; Line the 1-based line it starts on.
	Index      int             `json:"index"`
	Line       int             `json:"line"`
	ID         string          `json:"id"`
	Valid      bool            `json:"valid"`
	Violations []cim.Violation `json:"violations"`
}

const validateLong = `Validate CIM messages against the contract, as the service would. Each file (or standard input, -, the
default) holds messages one per line (NDJSON), one after another (such as jq . prints them), or as the
elements of a JSON array. A malformed message is reported and reading goes on at the next line, so the
messages after it are still checked. A missing or unreadable file is a finding on line 0 (code unreadable),
and the others are still checked.

Every finding starts with FILE:LINE: (1-based; 0 for the file itself). Output formats:
  text     one line per violation, and per valid message unless --quiet; a count on standard error
  json     one JSON object per message: source, index (0-based), line, id, valid, violations
  github   GitHub Actions annotations (::error file=...,line=...::), failures only

Exit status: 0 all valid (an empty input is 0 messages), 1 some invalid or a configuration error (as for
every command), 2 usage error or a file that could not be read.`

func newValidateCommand() *cobra.Command {
	var direction, format string
	var maxBytes int
	var quiet bool
	cmd := &cobra.Command{
		Use:   "validate [FILE|-]...",
		Short: "Validate CIM messages against the contract (for connector authors and CI)",
		Long:  validateLong,
		Example: `  cimstream validate msgs.ndjson
  cimstream validate --direction outbound reply.json
  cimstream validate msgs.ndjson --format json
  jq -c '.[]' export.json | cimstream validate --quiet -
  cimstream validate --format github testdata/*.ndjson    # in a GitHub Actions step`,
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return []string{"json", "ndjson", "jsonl"}, cobra.ShellCompDirectiveFilterFileExt
		},
		RunE: func(cmd *cobra.Command, sources []string) error {
			dir, ok := cim.ParseDirection(direction)
			if !ok {
				return usagef("--direction must be inbound or outbound, not %q", direction)
			}
			w, ok := findingWriters[format]
			if !ok {
				return usagef("--format must be text, json or github, not %q", format)
			}
			if maxBytes < 0 {
				return usagef("--max-bytes must be 0 (the configuration's inbound.maxMessageBytes) or more, not %d", maxBytes)
			}
			if len(sources) == 0 {
				sources = []string{"-"}
			}
			// Read as by every command even when --max-bytes replaces its limit, so that a --config or
			// --set that is wrong is an error here too.
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			maxBytes = cmp.Or(maxBytes, cfg.Inbound.MaxMessageBytes) // 0: the service's limit
			v := validator{dir: dir, limits: cim.Limits{MaxBytes: maxBytes, MaxDepth: cim.DefaultMaxDepth, MaxIDBytes: cfg.Inbound.MaxIDBytes},
				quiet: quiet, out: w(cmd.OutOrStdout()), stderr: cmd.ErrOrStderr()}
			return v.run(sources, cmd.InOrStdin())
		},
	}
	f := cmd.Flags()
	f.StringVar(&direction, "direction", "inbound", "inbound (from connectors) or outbound (from the CCM)")
	f.StringVar(&format, "format", "text", "text, json (one line per message) or github (annotations)")
	f.IntVar(&maxBytes, "max-bytes", 0, "largest message accepted; unset or 0: inbound.maxMessageBytes of the configuration, as in the service")
	f.BoolVarP(&quiet, "quiet", "q", false, "print failures only (and the count only when something failed)")
	_ = cmd.RegisterFlagCompletionFunc("direction", fixedCompletion("inbound", "outbound"))
	_ = cmd.RegisterFlagCompletionFunc("format", fixedCompletion("text", "json", "github"))
	return cmd
}

// validator checks every message of every source and counts.
type validator struct {
	dir    cim.Direction
	limits cim.Limits
	quiet  bool
	out    findingWriter
	stderr io.Writer

	total, invalid, unreadable int
}

func (v *validator) run(sources []string, stdin io.Reader) error {
	for _, src := range sources {
		n, err := v.source(src, stdin)
		var werr writeError
		if errors.As(err, &werr) {
			return exitError{code: 2, err: werr.err}
		}
		if err != nil {
			// A finding like every other, on line 0: the file, not a message in it.
			v.unreadable++
			r := validateResult{Source: src, Index: n, Violations: []cim.Violation{{Code: codeUnreadable, Message: readProblem(err)}}}
			if err := v.out.result(r); err != nil {
				return exitError{code: 2, err: err}
			}
		}
	}
	if !v.quiet || v.invalid > 0 || v.unreadable > 0 {
		fmt.Fprintf(v.stderr, "%d message(s), %d invalid", v.total, v.invalid)
		if v.unreadable > 0 {
			fmt.Fprintf(v.stderr, ", %d file(s) unreadable", v.unreadable)
		}
		fmt.Fprintln(v.stderr)
	}
	switch {
	case v.unreadable > 0:
		return silentExit(2)
	case v.invalid > 0:
		return silentExit(1)
	}
	return nil
}

// codeUnreadable is the finding for a file that could not be read.
const codeUnreadable = "unreadable"

// writeError is a failure to write the findings, which ends the command.
type writeError struct{ err error }

func (e writeError) Error() string { return e.err.Error() }

// readProblem says why a file could not be read, without repeating its name.
func readProblem(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Sprintf("cannot %s: %v", pe.Op, pe.Err)
	}
	return err.Error()
}

// source checks one file, or standard input for "-", and returns how many messages it read. Messages read
// before a read error are reported.
func (v *validator) source(src string, stdin io.Reader) (int, error) {
	r := stdin
	if src != "-" {
		f, err := os.Open(src)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		r = f
	}
	seq := jsonseq.NewReader(r, v.limits.MaxBytes)
	for index := 0; ; index++ {
		value, err := seq.Next()
		if err == io.EOF {
			return index, nil
		}
		if err != nil {
			return index, err
		}
		res := v.check(src, index, value)
		v.total++
		if !res.Valid {
			v.invalid++
		}
		if !res.Valid || !v.quiet {
			if err := v.out.result(res); err != nil {
				return index, writeError{err}
			}
		}
	}
}

func (v *validator) check(src string, index int, value jsonseq.Value) validateResult {
	r := validateResult{Source: src, Index: index, Line: value.Line, Violations: []cim.Violation{}}
	switch {
	case value.Err != nil:
		r.Violations = append(r.Violations, cim.Violation{Code: cim.CodeMalformed, Message: value.Err.Error()})
		return r
	case value.Size > v.limits.MaxBytes:
		r.Violations = append(r.Violations, cim.Violation{Code: cim.CodeTooLarge,
			Message: fmt.Sprintf("the message is %d bytes; the limit is %d", value.Size, v.limits.MaxBytes)})
		return r
	}
	m, vs := cim.DecodeAndValidate(value.Data, v.limits, v.dir)
	if m != nil {
		r.ID = m.ID()
	}
	if len(vs) > 0 {
		r.Violations = vs
		return r
	}
	r.Valid = true
	return r
}
