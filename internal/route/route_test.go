package route

import (
	"strconv"
	"strings"
	"testing"

	"github.com/cimstream/cimstream/internal/config"
)

func TestDestinations(t *testing.T) {
	channels := map[string]string{"https://shop.example.com": "web", "4179": "sms", "41445556677": "whatsapp", "web[1]": "exact"}
	cases := []struct {
		name   string
		routes []config.Route
		m      Message
		want   string // destinations, comma-separated
		why    string // matched route indexes, "d" for the default route
	}{
		{"no routes: default route", nil,
			Message{"https://shop.example.com", "AGENT", "PLAIN"}, "cim.outbound.web", "d"},
		{"exact serviceIdentifier is final", []config.Route{{ServiceIdentifier: "4179", Destinations: []string{"sms-eu"}}},
			Message{"4179", "BOT", "PLAIN"}, "sms-eu", "0"},
		{"exact serviceIdentifier does not match another", []config.Route{{ServiceIdentifier: "4179", Destinations: []string{"sms-eu"}}},
			Message{"41791", "BOT", "PLAIN"}, "", ""},
		{"glob serviceIdentifier", []config.Route{{ServiceIdentifier: "4144*", Destinations: []string{"wa-zurich"}}},
			Message{"41445556677", "BOT", "PLAIN"}, "wa-zurich", "0"},
		{"glob does not match", []config.Route{{ServiceIdentifier: "4144?", Destinations: []string{"wa-zurich"}}},
			Message{"41445556677", "BOT", "PLAIN"}, "cim.outbound.whatsapp", "d"},
		{"an exact value with glob characters", []config.Route{{ServiceIdentifier: "web[1]", Destinations: []string{"web-exact"}}},
			Message{"web[1]", "BOT", "PLAIN"}, "web-exact", "0"},
		{"sender type, case-insensitive", []config.Route{{SenderType: "agent", Destinations: []string{"agents"}}},
			Message{"4179", "AGENT", "PLAIN"}, "agents", "0"},
		{"sender type differs", []config.Route{{SenderType: "agent", Destinations: []string{"agents"}}},
			Message{"4179", "BOT", "PLAIN"}, "cim.outbound.sms", "d"},
		{"body type", []config.Route{{BodyType: "TEMPLATE", Destinations: []string{"templates"}}},
			Message{"4179", "BOT", "TEMPLATE"}, "templates", "0"},
		{"body type is case-sensitive", []config.Route{{BodyType: "TEMPLATE", Destinations: []string{"templates"}}},
			Message{"4179", "BOT", "template"}, "cim.outbound.sms", "d"},
		{"all fields must match", []config.Route{{ServiceIdentifier: "41*", SenderType: "AGENT", BodyType: "PLAIN", Destinations: []string{"x"}}},
			Message{"4179", "AGENT", "TEMPLATE"}, "cim.outbound.sms", "d"},
		{"continue reaches the default route", []config.Route{{SenderType: "AGENT", Destinations: []string{"qa.archive"}, Continue: true}},
			Message{"https://shop.example.com", "AGENT", "PLAIN"}, "qa.archive,cim.outbound.web", "0,d"},
		{"several continue routes, then the default route", []config.Route{
			{SenderType: "AGENT", Destinations: []string{"qa.archive"}, Continue: true},
			{BodyType: "PLAIN", Destinations: []string{"crm", "qa.archive"}, Continue: true},
			{BodyType: "TEMPLATE", Destinations: []string{"templates"}, Continue: true},
		}, Message{"4179", "AGENT", "PLAIN"}, "qa.archive,crm,cim.outbound.sms", "0,1,d"},
		{"a final route after continue routes stops before the default route", []config.Route{
			{SenderType: "AGENT", Destinations: []string{"qa.archive"}, Continue: true},
			{ServiceIdentifier: "4144*", Destinations: []string{"wa-zurich", "qa.archive"}},
			{SenderType: "AGENT", Destinations: []string{"never"}},
		}, Message{"41445556677", "AGENT", "PLAIN"}, "qa.archive,wa-zurich", "0,1"},
		{"the first final route wins", []config.Route{
			{BodyType: "PLAIN", Destinations: []string{"first"}},
			{BodyType: "PLAIN", Destinations: []string{"second"}},
		}, Message{"4179", "BOT", "PLAIN"}, "first", "0"},
		{"the default route may repeat a continue destination once", []config.Route{
			{SenderType: "AGENT", Destinations: []string{"cim.outbound.sms"}, Continue: true},
		}, Message{"4179", "AGENT", "PLAIN"}, "cim.outbound.sms", "0,d"},
		{"no route and no channel: nothing (FAILED/404)", []config.Route{{ServiceIdentifier: "4144*", Destinations: []string{"wa"}}},
			Message{"nowhere", "BOT", "PLAIN"}, "", ""},
		{"continue routes only and no channel: their destinations count", []config.Route{
			{SenderType: "AGENT", Destinations: []string{"qa.archive"}, Continue: true},
		}, Message{"nowhere", "AGENT", "PLAIN"}, "qa.archive", "0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := New(c.routes, channels).Explain(c.m)
			if got := strings.Join(e.Destinations, ","); got != c.want {
				t.Errorf("destinations %q, want %q", got, c.want)
			}
			var why []string
			for _, m := range e.Matches {
				if m.Index == DefaultRoute {
					why = append(why, "d")
					if m.Channel != channels[c.m.ServiceIdentifier] {
						t.Errorf("default route channel %q", m.Channel)
					}
				} else {
					why = append(why, strconv.Itoa(m.Index))
				}
			}
			if got := strings.Join(why, ","); got != c.why {
				t.Errorf("matched %q, want %q", got, c.why)
			}
			if got := strings.Join(New(c.routes, channels).Destinations(c.m), ","); got != c.want {
				t.Errorf("Destinations %q disagrees with Explain %q", got, c.want)
			}
		})
	}
}

func TestDefaultReached(t *testing.T) {
	r := New([]config.Route{
		{SenderType: "AGENT", Destinations: []string{"qa"}, Continue: true},
		{BodyType: "TEMPLATE", Destinations: []string{"t"}},
	}, nil)
	if e := r.Explain(Message{"x", "AGENT", "PLAIN"}); !e.DefaultReached {
		t.Error("only continue routes matched: the default route must be reached")
	}
	if e := r.Explain(Message{"x", "AGENT", "TEMPLATE"}); e.DefaultReached {
		t.Error("a final route matched: the default route must not be reached")
	}
}

func TestRouteValidation(t *testing.T) {
	cfg := config.Default()
	cfg.Outbound.Routes = []config.Route{
		{Name: "no destinations"},
		{Name: "bad glob", ServiceIdentifier: "[a", Destinations: []string{"x"}},
		{Name: "bad topic", Destinations: []string{"a b"}},
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("want errors")
	}
	for _, key := range []string{"outbound.routes[0].destinations", "outbound.routes[1].serviceIdentifier", "outbound.routes[2].destinations[0]"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
}
