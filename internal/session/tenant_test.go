package session

import (
	"testing"
	"time"
)

// Message ids are the connector's to choose: two connectors (or two customers of one) that both number
// their messages "1", "2", ... must open separate sessions and conversations, by START_CHAT, by a first
// message, and when a message adopts only one of the ids.
func TestSameMessageIDNeverOpensTheSameConversationForTwoKeys(t *testing.T) {
	tb := NewTable(Fixed(30 * time.Minute))
	a, b := Key("web", "ann"), Key("whatsapp", "ann")
	start := func(m Message) Message { m.Intent = "START_CHAT"; return m }
	for _, m := range []Message{at(1, "1", 0), start(at(2, "2", 1))} {
		oa, ob := tb.Apply(a, m, 0), tb.Apply(b, m, 0)
		if oa.ConversationID == ob.ConversationID || oa.ChannelSessionID == ob.ChannelSessionID {
			t.Fatalf("message %q (%s) opened the same ids for two keys: %+v %+v", m.ID, m.Intent, oa, ob)
		}
	}
	carried := at(3, "3", 40*minute)
	carried.ChannelSessionID = "their-session"
	oa, ob := NewTable(Fixed(time.Minute)).Apply(a, carried, 0), NewTable(Fixed(time.Minute)).Apply(b, carried, 0)
	if oa.ConversationID == ob.ConversationID {
		t.Fatalf("a carried session id with the same message id gave both keys conversation %s", oa.ConversationID)
	}
}
