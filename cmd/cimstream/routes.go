package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/cimstream/cimstream/internal/outbound"
	"github.com/cimstream/cimstream/internal/route"
)

const routesUsage = `usage: cimstream routes test [common flags] FILE|-...
Each file (or standard input, -) holds one JSON message, a JSON array of messages, or one message per line.
Every message is validated and routed as the outbound pipeline would, with the configuration given.
Exit status: 0 every message would be ACCEPTED, 1 some would fail (400 or 404), 2 usage, file or configuration error.
`

// routesCommand is `cimstream routes test`: it routes sample messages with a configuration, without a
// broker, so a routing change can be checked before it is deployed.
func routesCommand(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "test" {
		fmt.Fprint(stderr, routesUsage)
		return 2
	}
	cfg, sources, err := loadConfigArgs("routes test", args[1:], stderr)
	if err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintf(stderr, "cimstream routes test: %s\n", oneLine(err))
		}
		return 2
	}
	if len(sources) == 0 {
		fmt.Fprint(stderr, "cimstream routes test: name at least one message file, or - for standard input\n"+routesUsage)
		return 2
	}
	router := route.New(cfg.Outbound.Routes, cfg.Outbound.Channels)
	total, failed := 0, 0
	for _, src := range sources {
		data, err := readSource(src, stdin)
		if err != nil {
			fmt.Fprintf(stderr, "cimstream routes test: %v\n", err)
			return 2
		}
		for i, msg := range splitMessages(data) {
			v := outbound.Decide(router, msg, cfg.Inbound.MaxMessageBytes)
			if status, _ := v.Status(); status != outbound.StatusAccepted {
				failed++
			}
			total++
			writeVerdict(stdout, fmt.Sprintf("%s#%d", src, i), v)
		}
	}
	fmt.Fprintf(stderr, "%d message(s), %d would fail\n", total, failed)
	if failed > 0 {
		return 1
	}
	return 0
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
	for _, m := range v.Route.Matches {
		if m.Index == route.DefaultRoute {
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
	if v.Route.DefaultReached && !hasDefault(v.Route) {
		fmt.Fprintf(w, "  default route: no channel for %s\n", strconv.Quote(v.Message.ServiceIdentifier()))
	}
}

func hasDefault(e route.Explanation) bool {
	for _, m := range e.Matches {
		if m.Index == route.DefaultRoute {
			return true
		}
	}
	return false
}
