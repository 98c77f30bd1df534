package cim

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dump writes the tree under r as Decode sees it: kinds, the bytes of every value and key, the escape
// flags, children in order. Two messages with the same dump answer every accessor alike.
func dump(b *strings.Builder, r ref) {
	n := r.n()
	fmt.Fprintf(b, "%s[%d:%d]%q esc=%v", n.kind, n.start, n.end, r.bytes(), n.escaped)
	if n.keyEnd > 0 {
		fmt.Fprintf(b, " key=%q kesc=%v", r.m.raw[n.keyStart:n.keyEnd], n.keyEscaped)
	}
	b.WriteString("{")
	for c := n.first; c >= 0; c = r.m.nodes[c].next {
		dump(b, ref{r.m, c})
		b.WriteString(",")
	}
	b.WriteString("}")
}

func treeOf(m *Message) string {
	var b strings.Builder
	dump(&b, m.rootRef())
	return b.String()
}

// editCases are the inputs and edits Edited must agree with Decode on: inserts into empty and
// non-empty objects (twice into one), replacements of scalars, null, objects and arrays by values of
// other kinds, whitespace, escaped keys, repeated keys, the edits the inbound pipeline makes.
func editCases(t testing.TB) map[string][]byte {
	t.Helper()
	cases := map[string][]byte{
		"empty header":  []byte(`{"header":{},"body":{"type":"PLAIN"}}`),
		"spaces":        []byte(" { \"header\" : { \"a\" : 1 , \"customer\" : null } ,\n\"body\":{ } } "),
		"escaped keys":  []byte(`{"\u0069d":"x","header":{"conversation\u0049d":"old","t\u00e9":"\u00e9"},"body":{}}`),
		"repeated keys": []byte(`{"id":"a","header":{"conversationId":"1","conversationId":"2"},"id":"b","body":[]}`),
		"nested":        []byte(`{"header":{"customer":{"id":"c","tags":[1,{"x":[]}]},"timestamp":"2026-12-01T00:00:00Z"},"body":{"type":"PLAIN"}}`),
	}
	for _, dir := range []string{"testdata/bench", "testdata/corpus"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			cases[f] = data
		}
	}
	return cases
}

var editSets = [][]Edit{
	{Set(StringValue("00000000-0000-5000-8000-000000000000"), "id"), Set(IntValue(1732400000000), "header", "timestamp"),
		Set([]byte(`{"id":"c-1","firstName":"Ann Lee","isAnonymous":false}`), "header", "customer")},
	{Set(StringValue("s-1"), "header", "channelSessionId"), Set(StringValue("c-\"1\"\u00e9"), "header", "conversationId")},
	{Set(StringValue("CONNECTOR"), "header", "sender", "type")},
	{Set([]byte(`[]`), "header", "customer"), Set([]byte(`{}`), "header", "x"), Set([]byte(`null`), "body", "type")},
	{Set([]byte(`{"a":{"b":[true,false,null,-1.5e3]}}`), "header", "new"), Set(StringValue("tail"), "header", "newer")},
}

// Edited gives exactly the tree Decode gives for the encoded bytes, for every input and edit set.
func TestEditedEqualsDecodeOfEncoded(t *testing.T) {
	checked := 0
	for name, data := range editCases(t) {
		m, err := Decode(data)
		if err != nil || !m.rootRef().get("header").is(kindObject) {
			continue
		}
		for i, edits := range editSets {
			if i == 2 && !m.rootRef().path("header", "sender").is(kindObject) {
				continue
			}
			want, err := m.Encode(edits...)
			if err != nil {
				continue
			}
			got, err := m.Edited(edits...)
			if err != nil {
				t.Fatalf("%s, edits %d: %v", name, i, err)
			}
			if string(got.Raw()) != string(want) {
				t.Fatalf("%s, edits %d: bytes\n%s\nwant\n%s", name, i, got.Raw(), want)
			}
			decoded, err := Decode(want)
			if err != nil {
				t.Fatalf("%s, edits %d: %v", name, i, err)
			}
			if a, b := treeOf(got), treeOf(decoded); a != b {
				t.Fatalf("%s, edits %d: tree\n%s\nwant (decoded)\n%s", name, i, a, b)
			}
			// Edited again, on an edited message: still the decoded tree.
			again, err := got.Edited(Set(StringValue("z"), "header", "conversationId"))
			if err != nil {
				t.Fatal(err)
			}
			redecoded, _ := Decode(again.Raw())
			if a, b := treeOf(again), treeOf(redecoded); a != b {
				t.Fatalf("%s, edits %d, edited twice: tree\n%s\nwant\n%s", name, i, a, b)
			}
			checked++
		}
	}
	if checked < 20 {
		t.Fatalf("only %d cases checked", checked)
	}
}

// A value that is not one JSON value is refused, where Encode copies it as it is.
func TestEditedRefusesInvalidValues(t *testing.T) {
	m, err := Decode([]byte(`{"header":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{``, `{`, `1 2`, `"a`, " 1", "\"\xff\""} {
		if _, err := m.Edited(Set([]byte(v), "header", "x")); err == nil {
			t.Errorf("value %q: no error", v)
		}
	}
}
