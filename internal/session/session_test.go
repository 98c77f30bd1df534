package session

import (
	"encoding/json"
	"testing"
	"time"
)

const min = int64(60 * 1000)

func apply(t *testing.T, tb *Table, key string, m Message) Outcome {
	t.Helper()
	return tb.Apply(key, m)
}

func TestSessionLifecycle(t *testing.T) {
	tb := NewTable(30 * time.Minute)
	k := Key("web", "cust-1")
	first := apply(t, tb, k, Message{Offset: 1, ID: "m1", TimeMillis: 0})
	if !first.Opened || first.ChannelSessionID == "" || first.ConversationID == "" || first.ChannelSessionID == first.ConversationID {
		t.Fatalf("first message must open a session: %+v", first)
	}
	same := apply(t, tb, k, Message{Offset: 2, ID: "m2", TimeMillis: 29 * min})
	if same.Opened || same.ChannelSessionID != first.ChannelSessionID || same.ConversationID != first.ConversationID {
		t.Fatalf("within the idle timeout the session continues: %+v", same)
	}
	// 29 min after m2 (58 min after m1): still active, since activity extends the session.
	still := apply(t, tb, k, Message{Offset: 3, ID: "m3", TimeMillis: 58 * min})
	if still.Opened {
		t.Fatal("activity must extend the session")
	}
	idle := apply(t, tb, k, Message{Offset: 4, ID: "m4", TimeMillis: 58*min + 31*min})
	if !idle.Opened || idle.Closed != ReasonIdle || idle.ChannelSessionID == first.ChannelSessionID {
		t.Fatalf("after the idle timeout a new session opens: %+v", idle)
	}
	start := apply(t, tb, k, Message{Offset: 5, ID: "m5", Intent: "START_CHAT", TimeMillis: 90 * min})
	if !start.Opened || start.Closed != ReasonStartChat || start.ChannelSessionID == idle.ChannelSessionID {
		t.Fatalf("START_CHAT always opens a new session: %+v", start)
	}
	end := apply(t, tb, k, Message{Offset: 6, ID: "m6", Intent: "END_CHAT", TimeMillis: 91 * min})
	if end.Opened || end.Closed != ReasonEndChat || end.ChannelSessionID != start.ChannelSessionID {
		t.Fatalf("END_CHAT is forwarded with the current ids, then closes: %+v", end)
	}
	after := apply(t, tb, k, Message{Offset: 7, ID: "m7", TimeMillis: 92 * min})
	if !after.Opened || after.ChannelSessionID == start.ChannelSessionID {
		t.Fatalf("after END_CHAT the next message opens a new session: %+v", after)
	}
	other := apply(t, tb, Key("web", "cust-2"), Message{Offset: 8, ID: "m8", TimeMillis: 92 * min})
	if other.ChannelSessionID == after.ChannelSessionID {
		t.Fatal("customers do not share sessions")
	}
}

func TestCarriedIdsAreAdopted(t *testing.T) {
	tb := NewTable(30 * time.Minute)
	k := Key("wa", "4179")
	first := apply(t, tb, k, Message{Offset: 1, ID: "a", TimeMillis: 0})
	carried := apply(t, tb, k, Message{Offset: 2, ID: "b", TimeMillis: 1, ChannelSessionID: "S", ConversationID: "C"})
	if carried.ChannelSessionID != "S" || carried.ConversationID != "C" || carried.Closed != ReasonAdopted {
		t.Fatalf("carried ids are kept: %+v", carried)
	}
	next := apply(t, tb, k, Message{Offset: 3, ID: "c", TimeMillis: 2})
	if next.ChannelSessionID != "S" || next.ConversationID != "C" {
		t.Fatalf("and adopted as the current session: %+v", next)
	}
	half := apply(t, tb, k, Message{Offset: 4, ID: "d", TimeMillis: 3, ConversationID: "C2"})
	if half.ChannelSessionID != "S" || half.ConversationID != "C2" {
		t.Fatalf("a missing id is completed from the active session: %+v", half)
	}
	_ = first
}

func TestReplayGivesTheSameIds(t *testing.T) {
	tb := NewTable(30 * time.Minute)
	k := Key("web", "x")
	var outs []Outcome
	msgs := []Message{
		{Offset: 10, ID: "a", TimeMillis: 0},
		{Offset: 11, ID: "b", Intent: "START_CHAT", TimeMillis: 1},
		{Offset: 12, ID: "c", Intent: "END_CHAT", TimeMillis: 2},
		{Offset: 13, ID: "d", TimeMillis: 3},
	}
	for _, m := range msgs {
		outs = append(outs, apply(t, tb, k, m))
	}
	// Restore from the persisted state (as after a crash with uncommitted offsets) and replay.
	restored := NewTable(30 * time.Minute)
	if err := restored.Restore(k, Encode(outs[len(outs)-1].State)); err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		again := restored.Apply(k, m)
		if !again.Replayed || again.ChannelSessionID != outs[i].ChannelSessionID || again.ConversationID != outs[i].ConversationID {
			t.Fatalf("replay of offset %d: %+v, first time %+v", m.Offset, again, outs[i])
		}
	}
	// A fresh table given the same messages decides the same ids (determinism, not memory).
	fresh := NewTable(30 * time.Minute)
	for i, m := range msgs {
		if got := fresh.Apply(k, m); got.ChannelSessionID != outs[i].ChannelSessionID {
			t.Fatalf("offset %d: not deterministic", m.Offset)
		}
	}
}

func TestExpiryAndTombstones(t *testing.T) {
	tb := NewTable(time.Minute)
	apply(t, tb, "a", Message{Offset: 1, ID: "1", TimeMillis: 0})
	apply(t, tb, "b", Message{Offset: 2, ID: "2", TimeMillis: 5 * min})
	if got := tb.Active(5 * min); got != 1 {
		t.Fatalf("active = %d, want 1", got)
	}
	expired := tb.Expired(3 * min)
	if len(expired) != 1 || expired[0] != "a" || tb.Len() != 1 {
		t.Fatalf("expired %v, left %d", expired, tb.Len())
	}
	if err := tb.Restore("b", nil); err != nil || tb.Len() != 0 {
		t.Fatalf("a tombstone deletes: %v %d", err, tb.Len())
	}
	if err := tb.Restore("c", []byte("{broken")); err == nil {
		t.Fatal("a corrupt state must be reported")
	}
}

func TestKeysAndIds(t *testing.T) {
	if Key("ab", "c") == Key("a", "bc") {
		t.Fatal("keys must not collide across the boundary")
	}
	a, b := DeriveID("x", "y"), DeriveID("x", "y")
	if a != b || a == DeriveID("xy") {
		t.Fatal("derived ids must be stable and separate their parts")
	}
}

func TestEncodeMatchesEncodingJSON(t *testing.T) {
	states := []*State{
		{ChannelSessionID: "s", ConversationID: "c", Open: true, LastActivity: 5, Applied: 9},
		{ChannelSessionID: `we"ird\id`, ConversationID: "ü-ñ", Recent: []Decision{{Offset: 1, ChannelSessionID: "a", ConversationID: "b"}, {Offset: 2, ChannelSessionID: "x\ny", ConversationID: "z"}}},
	}
	for _, st := range states {
		want, _ := json.Marshal(st)
		if got := Encode(st); string(got) != string(want) {
			t.Errorf("Encode = %s, encoding/json = %s", got, want)
		}
	}
}
