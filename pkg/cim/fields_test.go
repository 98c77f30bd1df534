package cim

import (
	"fmt"
	"testing"
)

// fieldPaths is the path of every field, to check the index against a walk from the root.
var fieldPaths = [numFields][]string{
	fID: {"id"}, fHeader: {"header"}, fBody: {"body"},
	fSender: {"header", "sender"}, fChannelData: {"header", "channelData"},
	fChannelSessionID: {"header", "channelSessionId"}, fConversationID: {"header", "conversationId"},
	fCustomer: {"header", "customer"}, fTimestamp: {"header", "timestamp"}, fIntent: {"header", "intent"},
	fOriginalMessageID: {"header", "originalMessageId"}, fStamps: {"header", "stamps"},
	fEntities: {"header", "entities"}, fLanguage: {"header", "language"}, fSecurityInfo: {"header", "securityInfo"},
	fSchedulingMetaData: {"header", "schedulingMetaData"}, fRoomID: {"header", "roomId"},
	fProviderMessageID: {"header", "providerMessageId"},
	fSenderID:          {"header", "sender", "id"}, fSenderType: {"header", "sender", "type"},
	fSenderName: {"header", "sender", "senderName"}, fAdditionalDetail: {"header", "sender", "additionalDetail"},
	fServiceIdentifier:         {"header", "channelData", "serviceIdentifier"},
	fChannelCustomerIdentifier: {"header", "channelData", "channelCustomerIdentifier"},
	fCustomerFirstName:         {"header", "channelData", "customerFirstName"},
	fCustomerLastName:          {"header", "channelData", "customerLastName"},
	fRequestPriority:           {"header", "channelData", "requestPriority"},
	fAdditionalAttributes:      {"header", "channelData", "additionalAttributes"},
	fBodyType:                  {"body", "type"}, fMarkdownText: {"body", "markdownText"},
}

// walk follows a path with scan alone, as get did before the index.
func walk(m *Message, path []string) int32 {
	r := m.rootRef()
	for _, k := range path {
		if !r.is(kindObject) {
			return -1
		}
		r = r.scan(k)
	}
	return r.idx
}

func TestFieldKeys(t *testing.T) {
	for f, path := range fieldPaths {
		if len(path) == 0 {
			t.Fatalf("field %d has no path", f)
		}
		key := path[len(path)-1]
		if len(key) > maxFieldKey {
			t.Errorf("%q is longer than maxFieldKey (%d): get would not use the index for it", key, maxFieldKey)
		}
		parent := objRoot
		if len(path) > 1 {
			parent = objectOf(t, path[len(path)-2])
		}
		if got, ok := memberField(parent, []byte(key)); !ok || got != field(f) {
			t.Errorf("memberField(%d, %q) = %d, %v; want %d", parent, key, got, ok, f)
		}
	}
}

func objectOf(t *testing.T, key string) object {
	for o, f := range objectField {
		if p := fieldPaths[f]; o != int(objRoot) && p[len(p)-1] == key {
			return object(o)
		}
	}
	t.Fatalf("%q is not an indexed object", key)
	return 0
}

// indexCases add to editCases the shapes the index must treat as a walk does: parents that are not
// objects, escaped and repeated keys of fields, empty objects.
func indexCases(t testing.TB) map[string][]byte {
	cases := editCases(t)
	for name, s := range map[string]string{
		"header not an object":      `{"id":"a","header":[{"sender":{}}],"body":"x"}`,
		"channelData null":          `{"header":{"channelData":null,"sender":{"type":"bot"}},"body":{}}`,
		"sender a string":           `{"header":{"sender":"x","channelData":{"serviceIdentifier":"s"}},"body":{"type":1}}`,
		"escaped field keys":        `{"h\u0065ader":{"s\u0065nder":{"typ\u0065":"AGENT"},"channelData":{"serviceId\u0065ntifier":"s"}}}`,
		"repeated objects":          `{"header":{"channelData":{"serviceIdentifier":"a"},"channelData":{"channelCustomerIdentifier":"b"}},"header":{"intent":"x"}}`,
		"empty":                     `{}`,
		"a field key in the body":   `{"body":{"header":{"sender":{}},"type":"PLAIN"}}`,
		"a long unknown key":        `{"header":{"aKeyLongerThanAnyFieldKeyAtAll":1,"sender":{"id":"x"}}}`,
		"field keys in other place": `{"header":{"customer":{"id":"c","type":"t"},"sender":{}}}`,
	} {
		cases[name] = []byte(s)
	}
	return cases
}

// TestIndexMatchesWalk: every field read through the index is the node a walk from the root finds,
// after Decode and after Edited (whose edits replace and insert the indexed objects themselves).
func TestIndexMatchesWalk(t *testing.T) {
	edits := append(editSets, []Edit{Set([]byte(`{"sender":{"type":"BOT"},"channelData":{"serviceIdentifier":"new"}}`), "header")},
		[]Edit{Set([]byte(`{"type":"PLAIN"}`), "body"), Set([]byte(`"i"`), "id")})
	for name, data := range indexCases(t) {
		m, err := Decode(data)
		if err != nil {
			continue // the corpus holds messages that are not objects
		}
		checkIndex(t, name, m)
		for i, set := range edits {
			e, err := m.Edited(set...)
			if err != nil {
				continue // edits whose parent is not an object here
			}
			checkIndex(t, fmt.Sprintf("%s, edits %d", name, i), e)
		}
	}
}

func checkIndex(t testing.TB, name string, m *Message) {
	t.Helper()
	if !m.indexed {
		t.Errorf("%s: not indexed", name)
	}
	for _, path := range fieldPaths {
		want := walk(m, path)
		got := m.rootRef().path(path...)
		if got.idx != want {
			t.Errorf("%s: %v: node %d through the index, %d by a walk", name, path, got.idx, want)
		}
	}
}

// FuzzIndex: for any message, every field read through the index is the node a walk finds, after
// Decode and after Edited.
func FuzzIndex(f *testing.F) {
	for _, data := range indexCases(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeLimits(data, Limits{MaxBytes: 1 << 16, MaxDepth: 32})
		if err != nil {
			return
		}
		checkIndex(t, "decoded", m)
		if e, err := m.Edited(Set([]byte(`{"sender":{"type":"BOT"}}`), "header")); err == nil {
			checkIndex(t, "header replaced", e)
		}
		if e, err := m.Edited(Set([]byte(`"x"`), "header", "channelData", "serviceIdentifier")); err == nil {
			checkIndex(t, "serviceIdentifier set", e)
		}
	})
}
