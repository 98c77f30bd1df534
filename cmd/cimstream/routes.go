package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/jsonseq"
	"github.com/cimstream/cimstream/internal/outbound"
	"github.com/cimstream/cimstream/internal/route"
	"github.com/cimstream/cimstream/pkg/cim"
)

func newRoutesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "routes",
		Short:   "Check outbound routing without a broker",
		Long:    "Check where outbound messages would go under a configuration, without a broker.",
		Example: "  cimstream routes test --config cimstream.yaml samples.ndjson",
		RunE:    groupRun,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "test FILE|- ...",
		Short: "Show where each outbound message would go and why",
		Long: `Validate and route sample messages as the outbound pipeline would, with the configuration given, and
print per message the destinations and the routes that matched, or FAILED/404 (no route) or FAILED/400
(invalid). No broker is needed. Each file (or standard input, -) holds one JSON message, a JSON array of
messages, or one message per line.

Exit status: 0 every message would be ACCEPTED, 1 some would fail or a configuration error (as for every
command), 2 usage or file error.`,
		Example: `  cimstream routes test --config cimstream.yaml samples.ndjson
  cat reply.json | cimstream routes test - --set channels=web=web`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("name at least one message file, or - for standard input")
			}
			return nil
		},
		RunE: withConfig(func(cmd *cobra.Command, sources []string, cfg config.Config) error {
			return routesTest(cfg, sources, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		}),
	})
	return cmd
}

// routesTest routes sample messages with a configuration, so a routing change can be checked before it
// is deployed.
func routesTest(cfg config.Config, sources []string, stdin io.Reader, stdout, stderr io.Writer) error {
	router := route.New(cfg.Outbound.Routes, cfg.ChannelMap())
	total, failed := 0, 0
	for _, src := range sources {
		data, err := readSource(src, stdin)
		if err != nil {
			return exitError{code: 2, err: err}
		}
		seq := jsonseq.NewReader(bytes.NewReader(data), 0)
		for i := 0; ; i++ {
			value, err := seq.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return exitError{code: 2, err: fmt.Errorf("%s: %w", src, err)}
			}
			v := outbound.DecideLimits(router, value.Data, cim.Limits{MaxBytes: cfg.Inbound.MaxMessageBytes, MaxIDBytes: cfg.Inbound.MaxIDBytes})
			if status, _ := v.Status(); status != outbound.StatusAccepted {
				failed++
			}
			total++
			writeVerdict(stdout, fmt.Sprintf("%s#%d", src, i), v)
		}
	}
	fmt.Fprintf(stderr, "%d message(s), %d would fail\n", total, failed)
	if failed > 0 {
		return silentExit(1)
	}
	return nil
}

// writeVerdict prints one message's verdict: a status line, then one line per route that applied.
func writeVerdict(w io.Writer, where string, v outbound.Verdict) {
	if v.Message != nil && v.Message.ID() != "" {
		where += " id=" + v.Message.ID()
	}
	status, reason := v.Status()
	switch {
	case reason == outbound.ReasonInvalid:
		fmt.Fprintf(w, "[%s] FAILED/400: invalid: %s\n", where, strings.Join(v.Violations.Codes(), ", "))
		return
	case reason == outbound.ReasonNoRoute:
		fmt.Fprintf(w, "[%s] FAILED/404: no route\n", where)
	default:
		fmt.Fprintf(w, "[%s] %s to %d topic(s): %s\n", where, status, len(v.Route.Destinations), strings.Join(v.Route.Destinations, ", "))
	}
	defaulted := false
	for _, m := range v.Route.Matches {
		if m.Index == route.DefaultRoute {
			defaulted = true
			fmt.Fprintf(w, "  default route (channel %s): %s\n", m.Channel, strings.Join(m.Destinations, ", "))
			continue
		}
		name := "route " + strconv.Itoa(m.Index)
		if m.Name != "" {
			name += " " + strconv.Quote(m.Name)
		}
		kind := "final"
		if m.Continue {
			kind = "continue"
		}
		fmt.Fprintf(w, "  %s (%s): %s\n", name, kind, strings.Join(m.Destinations, ", "))
	}
	if v.Route.DefaultReached && !defaulted {
		fmt.Fprintf(w, "  default route: no channel for %s\n", strconv.Quote(v.Message.ServiceIdentifier()))
	}
}

// readSource reads a whole file, or standard input for "-".
func readSource(src string, stdin io.Reader) ([]byte, error) {
	if src == "-" {
		return io.ReadAll(stdin)
	}
	return os.ReadFile(src)
}
