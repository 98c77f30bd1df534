package route

import (
	"strings"
	"testing"

	"github.com/cimstream/cimstream/internal/config"
)

func TestDestinations(t *testing.T) {
	r := New([]config.Route{
		{Name: "audit agents", SenderType: "agent", Destinations: []string{"audit"}, Continue: true},
		{Name: "zurich", ServiceIdentifier: "4144*", Destinations: []string{"wa-zurich", "audit"}},
		{Name: "templates", BodyType: "TEMPLATE", Destinations: []string{"templates"}},
		{Name: "exact", ServiceIdentifier: "web[1]", Destinations: []string{"web-exact"}},
	}, map[string]string{"https://shop.example.com": "web", "4179": "sms"})
	cases := []struct {
		name string
		m    Message
		want string
	}{
		{"glob", Message{ServiceIdentifier: "41445556677", SenderType: "BOT", BodyType: "PLAIN"}, "wa-zurich,audit"},
		{"continue adds, next decides, no duplicates", Message{ServiceIdentifier: "4144", SenderType: "AGENT", BodyType: "PLAIN"}, "audit,wa-zurich"},
		{"continue alone", Message{ServiceIdentifier: "4179", SenderType: "AGENT", BodyType: "PLAIN"}, "audit"},
		{"body type", Message{ServiceIdentifier: "4179", SenderType: "BOT", BodyType: "TEMPLATE"}, "templates"},
		{"default route", Message{ServiceIdentifier: "https://shop.example.com", SenderType: "BOT", BodyType: "PLAIN"}, "cim.outbound.web"},
		{"exact value with glob characters", Message{ServiceIdentifier: "web[1]", SenderType: "BOT", BodyType: "PLAIN"}, "web-exact"},
		{"no route, unknown channel", Message{ServiceIdentifier: "nowhere", SenderType: "BOT", BodyType: "PLAIN"}, ""},
	}
	for _, c := range cases {
		if got := strings.Join(r.Destinations(c.m), ","); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
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
