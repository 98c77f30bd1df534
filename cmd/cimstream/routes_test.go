package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const routesConfig = `outbound:
  channels:
    "41445556677": whatsapp
    "https://shop.example.com": web
  routes:
    - name: every agent reply also goes to the QA archive
      senderType: AGENT
      destinations: [qa.archive]
      continue: true
    - serviceIdentifier: "4144*"
      destinations: [cim.outbound.whatsapp-zurich]
`

func outboundMsg(id, service, sender string) string {
	return fmt.Sprintf(`{"id":%q,"header":{"sender":{"id":"a-1","type":%q,"senderName":"Bob"},`+
		`"channelData":{"serviceIdentifier":%q,"channelCustomerIdentifier":"cust-1"},"channelSessionId":"s-1","conversationId":"c-1",`+
		`"customer":{"_id":"x"}},"body":{"type":"PLAIN","markdownText":"hello"}}`, id, sender, service)
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRoutesTestExplainsEachMessage(t *testing.T) {
	cfg := writeFile(t, "cimstream.yaml", routesConfig)
	ndjson := strings.Join([]string{
		outboundMsg("m-web", "https://shop.example.com", "AGENT"),
		outboundMsg("m-zh", "41445556677", "AGENT"),
		outboundMsg("m-bot", "41445556677", "BOT"),
		outboundMsg("m-lost", "33140000000", "BOT"),
		outboundMsg("m-qa", "33140000000", "AGENT"),
		`{"id":"m-bad","header":{"sender":{"id":"a","type":"AGENT","senderName":"B"}},"body":{"type":"PLAIN","markdownText":"x"}}`,
	}, "\n")
	code, out, errOut := runCLI(t, ndjson, "routes", "test", "--config", cfg, "-")
	want := `[-#0 id=m-web] ACCEPTED to 2 topic(s): qa.archive, cim.outbound.web
  route 0 "every agent reply also goes to the QA archive" (continue): qa.archive
  default route (channel web): cim.outbound.web
[-#1 id=m-zh] ACCEPTED to 2 topic(s): qa.archive, cim.outbound.whatsapp-zurich
  route 0 "every agent reply also goes to the QA archive" (continue): qa.archive
  route 1 (final): cim.outbound.whatsapp-zurich
[-#2 id=m-bot] ACCEPTED to 1 topic(s): cim.outbound.whatsapp-zurich
  route 1 (final): cim.outbound.whatsapp-zurich
[-#3 id=m-lost] FAILED/404: no route
  default route: no channel for "33140000000"
[-#4 id=m-qa] ACCEPTED to 1 topic(s): qa.archive
  route 0 "every agent reply also goes to the QA archive" (continue): qa.archive
  default route: no channel for "33140000000"
[-#5 id=m-bad] FAILED/400: invalid: required
`
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
	if code != 1 {
		t.Errorf("exit %d, want 1: some messages would fail", code)
	}
	if !strings.Contains(errOut, "6 message(s), 2 would fail") {
		t.Errorf("summary: %q", errOut)
	}
}

func TestRoutesTestAllAcceptedFromFiles(t *testing.T) {
	cfg := writeFile(t, "cimstream.yaml", routesConfig)
	a := writeFile(t, "a.json", outboundMsg("m-1", "https://shop.example.com", "BOT"))
	b := writeFile(t, "b.json", "["+outboundMsg("m-2", "41445556677", "BOT")+","+outboundMsg("m-3", "x", "BOT")+"]")
	// --set reaches the routing table like any other key: the table is replaced and m-3 gets a channel.
	code, out, _ := runCLI(t, "", "routes", "test", "--config", cfg, "--set", "outbound.channels=https://shop.example.com=web,x=sms", a, b)
	if code != 0 {
		t.Fatalf("exit %d, want 0; output:\n%s", code, out)
	}
	for _, line := range []string{
		"[" + a + "#0 id=m-1] ACCEPTED to 1 topic(s): cim.outbound.web\n",
		"[" + b + "#0 id=m-2] ACCEPTED to 1 topic(s): cim.outbound.whatsapp-zurich\n",
		"[" + b + "#1 id=m-3] ACCEPTED to 1 topic(s): cim.outbound.sms\n  default route (channel sms): cim.outbound.sms\n",
	} {
		if !strings.Contains(out, line) {
			t.Errorf("output lacks %q:\n%s", line, out)
		}
	}
}

func TestRoutesTestErrors(t *testing.T) {
	cfg := writeFile(t, "cimstream.yaml", routesConfig)
	bad := writeFile(t, "bad.yaml", "outbound:\n  routes:\n    - serviceIdentifier: \"[a\"\n      destinations: [x]\n")
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown subcommand", []string{"routes", "tset"}, 2, `unknown command "tset" for "cimstream routes"`},
		{"no message file", []string{"routes", "test", "--config", cfg}, 2, "name at least one message file"},
		{"missing file", []string{"routes", "test", "--config", cfg, filepath.Join(t.TempDir(), "none.json")}, 2, "no such file"},
		// A configuration error, as in every command.
		{"bad route", []string{"routes", "test", "--config", bad, "-"}, 1, "outbound.routes[0].serviceIdentifier"},
		{"unknown flag", []string{"routes", "test", "--nope", "-"}, 2, "unknown flag: --nope"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, "", c.args...)
			if code != c.code || !strings.Contains(errOut, c.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errOut, c.code, c.want)
			}
		})
	}
}
