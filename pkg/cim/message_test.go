package cim_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/cimstream/cimstream/pkg/cim"
)

func decodeCode(t *testing.T, data []byte, limits cim.Limits) string {
	t.Helper()
	_, err := cim.DecodeLimits(data, limits)
	var de *cim.DecodeError
	if err == nil {
		return ""
	}
	if !errors.As(err, &de) {
		t.Fatalf("error is not a *DecodeError: %v", err)
	}
	return de.Violation.Code
}

func TestHostileInput(t *testing.T) {
	nest := func(n int) []byte {
		return []byte(`{"x":` + strings.Repeat("[", n-1) + strings.Repeat("]", n-1) + "}")
	}
	big := []byte(`{"body":{"type":"PLAIN","markdownText":"` + strings.Repeat("a", cim.DefaultMaxBytes) + `"}}`)
	cases := []struct {
		name   string
		data   []byte
		limits cim.Limits
		want   string
	}{
		{"invalid UTF-8 in a string", []byte("{\"a\":\"\xc3\x28\"}"), cim.Limits{}, cim.CodeMalformed},
		{"invalid UTF-8 outside strings", []byte("{\"a\":1}\xff"), cim.Limits{}, cim.CodeMalformed},
		{"binary garbage", []byte{0x00, 0x01, 0xfe, 0x7b}, cim.Limits{}, cim.CodeMalformed},
		{"control character in a string", []byte("{\"a\":\"x\x01\"}"), cim.Limits{}, cim.CodeMalformed},
		{"bad escape", []byte(`{"a":"\x"}`), cim.Limits{}, cim.CodeMalformed},
		{"short unicode escape", []byte(`{"a":"\u12"}`), cim.Limits{}, cim.CodeMalformed},
		{"leading zero", []byte(`{"a":01}`), cim.Limits{}, cim.CodeMalformed},
		{"bare minus", []byte(`{"a":-}`), cim.Limits{}, cim.CodeMalformed},
		{"missing exponent digits", []byte(`{"a":1e}`), cim.Limits{}, cim.CodeMalformed},
		{"trailing comma", []byte(`{"a":1,}`), cim.Limits{}, cim.CodeMalformed},
		{"nul", []byte("{\"a\":nul}"), cim.Limits{}, cim.CodeMalformed},
		{"64 levels are allowed", nest(64), cim.Limits{}, ""},
		{"65 levels are too deep", nest(65), cim.Limits{}, cim.CodeTooDeep},
		{"a custom depth", nest(5), cim.Limits{MaxDepth: 4}, cim.CodeTooDeep},
		{"over 1 MiB", big, cim.Limits{}, cim.CodeTooLarge},
		{"a custom size", []byte(`{"a":"0123456789"}`), cim.Limits{MaxBytes: 10}, cim.CodeTooLarge},
		{"a very deep array bomb", []byte(strings.Repeat("[", 100000)), cim.Limits{}, cim.CodeTooDeep},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := decodeCode(t, c.data, c.limits); got != c.want {
				t.Fatalf("code %q, want %q", got, c.want)
			}
		})
	}
}

func TestEditsKeepEverythingElse(t *testing.T) {
	in := `{ "header" : {"sender":{"id":"c","type":"connector","senderName":"W"}, "x-custom": [1, {"deep": true}],
  "channelData":{"serviceIdentifier":"s","channelCustomerIdentifier":"c"} , "conversationId": null},
  "body":{"type":"PLAIN","markdownText":"caf\u00e9"}, "trailer": 1e3 }`
	m, err := cim.Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Encode(
		cim.Set(cim.StringValue("conv-1"), "header", "conversationId"),   // replaced in place
		cim.Set(cim.StringValue("sess-1"), "header", "channelSessionId"), // added to header
		cim.Set(cim.StringValue("CONNECTOR"), "header", "sender", "type"),
		cim.Set(cim.StringValue("id-1"), "id"), // added at top level
	)
	if err != nil {
		t.Fatal(err)
	}
	want := `{ "header" : {"sender":{"id":"c","type":"CONNECTOR","senderName":"W"}, "x-custom": [1, {"deep": true}],
  "channelData":{"serviceIdentifier":"s","channelCustomerIdentifier":"c"} , "conversationId": "conv-1","channelSessionId":"sess-1"},
  "body":{"type":"PLAIN","markdownText":"caf\u00e9"}, "trailer": 1e3 ,"id":"id-1"}`
	if string(out) != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}
	if !json.Valid(out) {
		t.Fatal("output is not valid JSON")
	}
	if unchanged, _ := m.Encode(); !bytes.Equal(unchanged, []byte(in)) {
		t.Fatal("encoding without edits must reproduce the input byte for byte")
	}
}

func TestEditsIntoEmptyObjects(t *testing.T) {
	m, err := cim.Decode([]byte(`{"header":{},"body":{ }}`))
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Encode(cim.Set([]byte(`1`), "header", "a"), cim.Set([]byte(`2`), "header", "b"), cim.Set([]byte(`{"k":"v"}`), "body", "c"))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"header":{"a":1,"b":2},"body":{ "c":{"k":"v"}}}`; string(out) != want {
		t.Fatalf("got %s want %s", out, want)
	}
}

func TestEditErrors(t *testing.T) {
	m, _ := cim.Decode([]byte(`{"header":{"a":{"b":1}},"body":[]}`))
	for name, edits := range map[string][]cim.Edit{
		"parent absent":     {cim.Set([]byte(`1`), "nope", "x")},
		"parent not object": {cim.Set([]byte(`1`), "body", "x")},
		"empty path":        {{Value: []byte(`1`)}},
		"overlap":           {cim.Set([]byte(`1`), "header", "a"), cim.Set([]byte(`2`), "header", "a", "b")},
	} {
		if _, err := m.Encode(edits...); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}

func TestAccessors(t *testing.T) {
	m, err := cim.Decode([]byte(`{"id":"m\"1","header":{"sender":{"type":"bot"},"intent":"START_CHAT","timestamp":"2026-01-02T03:04:05.678Z",
	"channelData":{"serviceIdentifier":"svc","channelCustomerIdentifier":"cust","customerFirstName":" Ann ","customerLastName":""},
	"conversationId":"  ","channelSessionId":"s1","dup":1,"dup":2},"body":{"type":"PLAIN"}}`))
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string][2]string{
		"ID":                {m.ID(), `m"1`},
		"SenderType":        {m.SenderType(), "BOT"},
		"Intent":            {m.Intent(), "START_CHAT"},
		"BodyType":          {m.BodyType(), "PLAIN"},
		"ServiceIdentifier": {m.ServiceIdentifier(), "svc"},
		"Customer":          {m.ChannelCustomerIdentifier(), "cust"},
		"CustomerName":      {m.CustomerName(), "Ann"},
		"ConversationID":    {m.ConversationID(), ""},
		"ChannelSessionID":  {m.ChannelSessionID(), "s1"},
		"last duplicate":    {string(m.RawValue("header", "dup")), "2"},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", name, c[0], c[1])
		}
	}
	if ms, ok := m.TimestampMillis(); !ok || ms != 1767323045678 {
		t.Errorf("TimestampMillis = %d %v", ms, ok)
	}
	if cim.UnknownIntent(m) {
		t.Error("START_CHAT is a known intent")
	}
}

func TestAppendStringIsJSON(t *testing.T) {
	for _, s := range []string{"plain", "quote\" back\\ slash", "ctl\x00\x1f\n\t", "caf\u00e9 \U0001F600", "bad\xffutf8", "<&>"} {
		var back string
		enc := cim.AppendString(nil, s)
		if err := json.Unmarshal(enc, &back); err != nil {
			t.Fatalf("%q encodes to invalid JSON %s: %v", s, enc, err)
		}
		if want := strings.ToValidUTF8(s, "\uFFFD"); back != want {
			t.Errorf("round trip of %q gave %q", s, back)
		}
	}
}
