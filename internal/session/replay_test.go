package session

import (
	"fmt"
	"testing"
	"time"
)

// conversations applies n START_CHAT … END_CHAT conversations of two messages each for key k from source
// src, one record per millisecond of processing time from now, and returns the outcomes in order.
func conversations(tb *Table, k, src string, from int64, n int, now int64) ([]Message, []Outcome) {
	var msgs []Message
	var outs []Outcome
	for c := 0; c < n; c++ {
		for i, intent := range []string{"START_CHAT", "", "END_CHAT"} {
			o := from + int64(3*c+i)
			m := Message{Position: Position{Source: src, Offset: o}, Seq: o, ID: fmt.Sprint(src, "-", o), Intent: intent,
				TimeMillis: hoursAgo + o*1000}
			msgs = append(msgs, m)
			outs = append(outs, tb.Apply(k, m, now+int64(len(outs))))
		}
	}
	return msgs, outs
}

// A backlog makes a customer's whole history one uncommitted tail: 20 conversations (40 decisions), all
// replayed after a crash, each record with exactly the ids of its first copy.
func TestReplayOfALongTailIsExact(t *testing.T) {
	tb := NewTable(Fixed(30 * time.Minute))
	k := Key("web", "backlog")
	msgs, first := conversations(tb, k, "in/0", 0, 20, 1_000)
	for i, m := range msgs {
		again := tb.Apply(k, with(m, func(m *Message) { m.Seq += 1000 }), 5_000)
		if !again.Replayed || again.Forgotten || again.ChannelSessionID != first[i].ChannelSessionID || again.ConversationID != first[i].ConversationID {
			t.Fatalf("record %d: replay %+v, first %+v", i, again, first[i])
		}
	}
}

// Duplicates of one source partition arrive after the key made many decisions from another (an ingest
// member crashed while the other kept going): still exact.
func TestReplayAfterDecisionsFromAnotherSource(t *testing.T) {
	tb := NewTable(Fixed(30 * time.Minute))
	k := Key("web", "two-sources")
	msgs, first := conversations(tb, k, "in/0", 0, 3, 0)
	conversations(tb, k, "in/1", 0, 15, 100)
	for i, m := range msgs {
		again := tb.Apply(k, m, 200)
		if !again.Replayed || again.Forgotten || again.ConversationID != first[i].ConversationID {
			t.Fatalf("record %d of in/0: replay %+v, first %+v", i, again, first[i])
		}
	}
}

// The window is counted in running time from the next decision: at exactly the window the old decision
// still answers; a millisecond later it is gone and the replay says so.
func TestReplayWindowBoundary(t *testing.T) {
	window := time.Minute
	for _, tc := range []struct {
		later     int64
		forgotten bool
	}{{later: window.Milliseconds(), forgotten: false}, {later: window.Milliseconds() + 1, forgotten: true}} {
		tb := NewTable(Fixed(30 * time.Minute)).WithReplayWindow(window)
		k := Key("web", "w")
		first := tb.Apply(k, at(0, "a", hoursAgo), 0)                                             // decision 1 at run 0
		tb.Apply(k, with(at(1, "b", hoursAgo), func(m *Message) { m.Intent = "START_CHAT" }), 10) // decision 2 at run 10
		tb.Apply(k, at(2, "c", hoursAgo), 10+tc.later)                                            // prunes what is older
		got := tb.Apply(k, at(0, "a", hoursAgo), 10+tc.later)
		if !got.Replayed || got.Forgotten != tc.forgotten {
			t.Fatalf("%d ms after the next decision: %+v", tc.later, got)
		}
		if !got.Forgotten && got.ConversationID != first.ConversationID {
			t.Fatalf("inside the window the replay gets the first ids: %+v vs %+v", got, first)
		}
	}
}

// An outage does not age the decisions a restart replays: the state goes through the changelog, the
// wall clock jumps by hours, new records of the key are applied first, and the tail is still exact.
func TestReplayWindowSurvivesOutageAndRestore(t *testing.T) {
	wall := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC).UnixMilli()
	tb := NewTable(Fixed(30 * time.Minute)).WithReplayWindow(time.Minute)
	k := Key("web", "outage")
	msgs, first := conversations(tb, k, "in/0", 0, 3, wall)

	restored := NewTable(Fixed(30 * time.Minute)).WithReplayWindow(time.Minute)
	later := wall + 5*time.Hour.Milliseconds()
	if err := restored.Restore(k, Encode(tb.Get(k)), later); err != nil {
		t.Fatal(err)
	}
	conversations(restored, k, "in/1", 0, 2, later+30_000) // the other source goes first after the restart
	for i, m := range msgs {
		again := restored.Apply(k, m, later+40_000)
		if !again.Replayed || again.Forgotten || again.ConversationID != first[i].ConversationID {
			t.Fatalf("record %d after a 5 h outage: replay %+v, first %+v", i, again, first[i])
		}
	}
}

// More decisions than a state keeps, inside one window: the ones dropped are counted, and a replay of a
// record they governed says it was forgotten instead of passing for exact.
func TestDecisionsBeyondTheLimitAreCounted(t *testing.T) {
	tb := NewTable(Fixed(30 * time.Minute))
	k := Key("web", "many")
	n := recentLimit/2 + 3 // two decisions per conversation
	msgs, outs := conversations(tb, k, "in/0", 0, n, 0)
	evicted := 0
	for _, o := range outs {
		evicted += o.Evicted
	}
	if want := 2*n - recentLimit; evicted != want {
		t.Fatalf("evicted %d decisions, want %d", evicted, want)
	}
	if got := tb.Apply(k, msgs[0], 0); !got.Replayed || !got.Forgotten {
		t.Fatalf("a replay governed by an evicted decision must say so: %+v", got)
	}
	last := len(msgs) - 1
	if got := tb.Apply(k, msgs[last], 0); !got.Replayed || got.Forgotten || got.ConversationID != outs[last].ConversationID {
		t.Fatalf("a recent replay stays exact: %+v vs %+v", got, outs[last])
	}
}

// The running clock never goes back, even when the wall clock does.
func TestRunningClockIsMonotonic(t *testing.T) {
	tb := NewTable(Fixed(time.Minute))
	a := tb.running(10_000)
	b := tb.running(4_000)
	c := tb.running(12_000)
	if a != 0 || b != 0 || c != 2_000 {
		t.Fatalf("running clock: %d, %d, %d", a, b, c)
	}
}

// A paused table's running clock stands still until it is used again.
func TestPausedClockStandsStill(t *testing.T) {
	tb := NewTable(Fixed(time.Minute))
	tb.running(1_000)
	tb.running(5_000) // 4 s of running time
	tb.Pause()
	if got := tb.running(3_600_000); got != 4_000 {
		t.Fatalf("after an hour paused the clock reads %d, want 4000", got)
	}
	if got := tb.running(3_601_000); got != 5_000 {
		t.Fatalf("resumed clock %d, want 5000", got)
	}
}
