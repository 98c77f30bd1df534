package cim_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/cimstream/cimstream/pkg/cim"
)

// identifying are the strings the session state and the idempotency memory keep, each with the
// direction and body type it is checked in.
var identifying = []struct {
	path     []string
	dir      cim.Direction
	bodyType string
}{
	{[]string{"id"}, cim.Inbound, "PLAIN"},
	{[]string{"id"}, cim.Outbound, "PLAIN"},
	{[]string{"header", "conversationId"}, cim.Inbound, "PLAIN"},
	{[]string{"header", "conversationId"}, cim.Outbound, "PLAIN"},
	{[]string{"header", "channelSessionId"}, cim.Inbound, "PLAIN"},
	{[]string{"header", "channelSessionId"}, cim.Outbound, "PLAIN"},
	{[]string{"header", "channelData", "channelCustomerIdentifier"}, cim.Inbound, "PLAIN"},
	{[]string{"header", "channelData", "channelCustomerIdentifier"}, cim.Outbound, "PLAIN"},
	{[]string{"header", "channelData", "serviceIdentifier"}, cim.Inbound, "PLAIN"},
	{[]string{"header", "channelData", "serviceIdentifier"}, cim.Outbound, "PLAIN"},
	{[]string{"header", "sender", "id"}, cim.Inbound, "PLAIN"},
	{[]string{"header", "sender", "id"}, cim.Outbound, "PLAIN"},
	{[]string{"header", "customer", "id"}, cim.Inbound, "PLAIN"},
	{[]string{"header", "customer", "_id"}, cim.Outbound, "PLAIN"},
	{[]string{"header", "originalMessageId"}, cim.Inbound, "PLAIN"},
	{[]string{"header", "originalMessageId"}, cim.Outbound, "PLAIN"},
	{[]string{"body", "messageId"}, cim.Inbound, "DELIVERYNOTIFICATION"},
	{[]string{"body", "messageId"}, cim.Outbound, "DELIVERYNOTIFICATION"},
}

// limitMessage is a valid message of the direction with the string at path set to value.
func limitMessage(t *testing.T, dir cim.Direction, bodyType string, path []string, value string) []byte {
	t.Helper()
	m := map[string]any{
		"id": "m-1",
		"header": map[string]any{
			"sender":            map[string]any{"id": "web", "type": "CONNECTOR", "senderName": "WEB"},
			"channelData":       map[string]any{"serviceIdentifier": "web", "channelCustomerIdentifier": "c-1"},
			"customer":          map[string]any{"id": "cust-1"},
			"channelSessionId":  "s-1",
			"conversationId":    "c-1",
			"intent":            "REPLY_TO",
			"originalMessageId": "m-0",
		},
		"body": map[string]any{"type": "PLAIN", "markdownText": "hi"},
	}
	if bodyType == "DELIVERYNOTIFICATION" {
		m["body"] = map[string]any{"type": bodyType, "messageId": "m-0", "status": "READ", "reasonCode": 200}
	}
	obj := m
	for _, k := range path[:len(path)-1] {
		obj = obj[k].(map[string]any)
	}
	obj[path[len(path)-1]] = value
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Every identifying string is accepted at the limit and too_long one byte over it, with its path and a
// sentence naming the limit; the default limit (zero Limits) is 1 KiB.
func TestIdentifyingStringsAreBounded(t *testing.T) {
	for _, limits := range []cim.Limits{{}, {MaxIDBytes: 64}} {
		limit := limits.MaxIDBytes
		if limit == 0 {
			limit = cim.DefaultMaxIDBytes
			if limit != 1024 {
				t.Fatalf("DefaultMaxIDBytes = %d, the contract says 1 KiB", limit)
			}
		}
		for _, f := range identifying {
			path := strings.Join(f.path, ".")
			t.Run(itoa(limit)+"/"+f.dir.String()+"/"+path, func(t *testing.T) {
				for _, n := range []int{limit, limit + 1} {
					m, err := cim.DecodeLimits(limitMessage(t, f.dir, f.bodyType, f.path, strings.Repeat("x", n)), limits)
					if err != nil {
						t.Fatal(err)
					}
					vs := cim.Validate(m, f.dir)
					if n == limit {
						if len(vs) > 0 {
							t.Fatalf("%d bytes (the limit) must be accepted: %v", n, vs)
						}
						continue
					}
					if len(vs) != 1 || vs[0].Code != cim.CodeTooLong || vs[0].Path != path {
						t.Fatalf("%d bytes (one over %d): want one too_long at %s, got %v", n, limit, path, vs)
					}
					if want := "limit is " + itoa(limit) + " bytes"; !strings.Contains(vs[0].Message, want) {
						t.Fatalf("the sentence must name the limit (%q): %q", want, vs[0].Message)
					}
				}
			})
		}
	}
}

// The bound is on the string's bytes as the state keeps them (unescaped UTF-8), not on how the JSON
// spells them: an escaped id at the limit passes, a multi-byte one over it does not.
func TestIdentifyingStringBytesAreUnescaped(t *testing.T) {
	escaped := `{"id":"` + strings.Repeat(`\u0041`, cim.DefaultMaxIDBytes) + `","header":{"sender":{"id":"w","type":"BOT","senderName":"w"},"conversationId":"c"},"body":{"type":"CUSTOM"}}`
	m, err := cim.Decode([]byte(escaped))
	if err != nil {
		t.Fatal(err)
	}
	if vs := cim.Validate(m, cim.Inbound); len(vs) > 0 {
		t.Fatalf("1024 escaped ASCII letters are 1024 bytes: %v", vs)
	}
	wide := limitMessage(t, cim.Inbound, "PLAIN", []string{"id"}, strings.Repeat("é", cim.DefaultMaxIDBytes/2)+"x")
	m, err = cim.Decode(wide)
	if err != nil {
		t.Fatal(err)
	}
	if vs := cim.Validate(m, cim.Inbound); len(vs) != 1 || vs[0].Code != cim.CodeTooLong {
		t.Fatalf("513 characters in 1025 bytes are over the limit: %v", vs)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
