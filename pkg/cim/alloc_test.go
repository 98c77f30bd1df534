package cim_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/cimstream/cimstream/pkg/cim"
)

// inboundEdits are the edits the inbound pipeline makes to a typical message: an id, the timestamp
// and an inserted customer object.
var inboundEdits = []cim.Edit{
	cim.Set(cim.StringValue("0d6f1a9e-5a63-5c4e-9a43-1f4f0b1e2d3c"), "id"),
	cim.Set(cim.IntValue(1732400000001), "header", "timestamp"),
	cim.Set([]byte(`{"id":"6a1f3b0c-1d2e-5f60-8a9b-0c1d2e3f4a5b","firstName":"Ann Lee","isAnonymous":false}`), "header", "customer2"),
}

// TestAllocations holds the allocations per message of the hot paths to what they are, so that a
// change that adds one is seen: every message of the inbound pipeline goes through each of these.
func TestAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	data, err := os.ReadFile("testdata/bench/plain-1k.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := cim.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	// A "\n" in markdownText, as chat clients send: one allocation more, for its unescaped copy.
	escaped := bytes.Replace(data, []byte(`"markdownText":"Hello,`), []byte(`"markdownText":"Hello,\n`), 1)
	if bytes.Equal(escaped, data) {
		t.Fatal("the escaped variant of the message is the message")
	}
	for _, c := range []struct {
		name string
		max  float64
		f    func()
	}{
		{"Decode and Validate (the node slice and the Message)", 2, func() { _ = cim.Validate(must(cim.Decode(data)), cim.Inbound) }},
		{"Decode and Validate of a message with an escaped string", 3, func() { _ = cim.Validate(must(cim.Decode(escaped)), cim.Inbound) }},
		{"enumerated accessors", 0, func() { _, _, _ = m.BodyType(), m.SenderType(), m.Intent() }},
		{"String of an enumerated field", 0, func() { _, _ = m.String("header", "sender", "type") }},
		{"Encode (its output)", 1, func() { _, _ = m.Encode(inboundEdits...) }},
		{"Edited (the output, its nodes and the Message)", 3, func() { _, _ = m.Edited(inboundEdits...) }},
		{"StringValue (its output)", 1, func() { _ = cim.StringValue("browser-7f3a9c21e4b5-and-some-more") }},
	} {
		if got := testing.AllocsPerRun(100, c.f); got > c.max {
			t.Errorf("%s: %.0f allocations, want at most %.0f", c.name, got, c.max)
		}
	}
}

func must(m *cim.Message, err error) *cim.Message {
	if err != nil {
		panic(err)
	}
	return m
}
