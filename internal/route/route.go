// Package route decides the destination topics of an outbound message: configured routes first, then
// the default route cim.outbound.<channel> from the serviceIdentifier → channel table.
package route

import (
	"path"
	"strings"

	"github.com/cimstream/cimstream/internal/config"
)

// Message is what routing looks at.
type Message struct {
	ServiceIdentifier string
	SenderType        string
	BodyType          string
}

// Router holds validated routes and the channel table.
type Router struct {
	routes   []config.Route
	channels map[string]string
	prefix   string
}

// New returns a router; routes must have passed config validation.
func New(routes []config.Route, channels map[string]string) *Router {
	return &Router{routes: routes, channels: channels, prefix: "cim.outbound."}
}

// Destinations returns the topics for m, without duplicates, in route order; empty when nothing matches
// and the channel of m's serviceIdentifier is not in the table (the contract's FAILED/404).
func (r *Router) Destinations(m Message) []string {
	var out []string
	matched := false
	for _, rt := range r.routes {
		if !matches(rt, m) {
			continue
		}
		matched = true
		for _, d := range rt.Destinations {
			out = appendNew(out, d)
		}
		if !rt.Continue {
			return out
		}
	}
	if matched {
		return out
	}
	if ch, ok := r.channels[m.ServiceIdentifier]; ok {
		return []string{r.prefix + ch}
	}
	return nil
}

func matches(rt config.Route, m Message) bool {
	if rt.ServiceIdentifier != "" && rt.ServiceIdentifier != m.ServiceIdentifier {
		if ok, _ := path.Match(rt.ServiceIdentifier, m.ServiceIdentifier); !ok {
			return false
		}
	}
	if rt.SenderType != "" && !strings.EqualFold(rt.SenderType, m.SenderType) {
		return false
	}
	return rt.BodyType == "" || rt.BodyType == m.BodyType
}

func appendNew(list []string, s string) []string {
	for _, v := range list {
		if v == s {
			return list
		}
	}
	return append(list, s)
}
