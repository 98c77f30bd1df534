// Package route decides the destination topics of an outbound message: configured routes in order, then
// the default route cim.outbound.<channel> from the serviceIdentifier → channel table (contract section 4).
package route

import (
	"path"
	"strings"

	"github.com/cimstream/cimstream/internal/config"
)

// DefaultRoute is the Match.Index of the default route.
const DefaultRoute = -1

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
}

// New returns a router; routes must have passed config validation.
func New(routes []config.Route, channels map[string]string) *Router {
	return &Router{routes: routes, channels: channels}
}

// Match is one route that applied to a message.
type Match struct {
	Index        int    // position in outbound.routes, or DefaultRoute
	Name         string // the route's name (empty for unnamed routes and the default route)
	Channel      string // the default route's channel
	Continue     bool
	Destinations []string // as configured, duplicates with earlier matches included
}

// Explanation says where a message goes and why.
type Explanation struct {
	// Matches are the routes that applied, in evaluation order; the default route last when reached.
	Matches []Match
	// Destinations are the topics of all matches without duplicates, in order of first appearance.
	Destinations []string
	// DefaultReached is true when no final route matched, so evaluation went on to the default route,
	// whether or not the message's serviceIdentifier has a channel.
	DefaultReached bool
}

// Explain evaluates the routes in order. A matching route adds its destinations; without `continue` it is
// final. When no final route matched, evaluation reaches the default route, which adds
// cim.outbound.<channel> if the serviceIdentifier has a channel. Empty Destinations is the contract's
// FAILED/404: no route matched and the channel is undefined.
func (r *Router) Explain(m Message) Explanation {
	var e Explanation
	for i, rt := range r.routes {
		if !matches(rt, m) {
			continue
		}
		e.add(Match{Index: i, Name: rt.Name, Continue: rt.Continue, Destinations: rt.Destinations})
		if !rt.Continue {
			return e
		}
	}
	e.DefaultReached = true
	if ch, ok := r.channels[m.ServiceIdentifier]; ok {
		e.add(Match{Index: DefaultRoute, Channel: ch, Destinations: []string{config.OutboundTopic(ch)}})
	}
	return e
}

// Destinations returns the topics for m (Explain's Destinations); empty means FAILED/404.
func (r *Router) Destinations(m Message) []string {
	return r.Explain(m).Destinations
}

func (e *Explanation) add(m Match) {
	e.Matches = append(e.Matches, m)
	for _, d := range m.Destinations {
		if !contains(e.Destinations, d) {
			e.Destinations = append(e.Destinations, d)
		}
	}
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

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
