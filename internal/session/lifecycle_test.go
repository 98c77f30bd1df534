package session

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// data is the session data a message of customer n carries.
func data(n int) Data {
	return Data{ChannelData: json.RawMessage(fmt.Sprintf(`{"serviceIdentifier":"web","channelCustomerIdentifier":"c%d"}`, n)),
		Customer: json.RawMessage(fmt.Sprintf(`{"id":"cust-%d","firstName":"N%d"}`, n, n))}
}

// lifecycle is the part of an Outcome the lifecycle events are built from.
type lifecycle struct {
	Sid, Cid string
	Opened   bool
	Closed   Reason
	Previous Previous
	ClosedAt int64
	Ended    bool
	Data     Data
}

func lifecycleOf(o Outcome) lifecycle {
	return lifecycle{o.ChannelSessionID, o.ConversationID, o.Opened, o.Closed, o.Previous, o.ClosedAt, o.Ended, o.Data}
}

// Every transition says which session ended, why, at which record time, and with which data, and which
// session opened.
func TestLifecycleTransitions(t *testing.T) {
	const idle = 30 * minute
	tb := NewTable(Fixed(30 * time.Minute))
	k := Key("web", "c1")
	msg := func(o int64, ms int64, f func(*Message)) Message {
		m := at(o, fmt.Sprint("m", o), hoursAgo+ms)
		m.Data = data(int(o))
		if f != nil {
			f(m2(&m))
		}
		return m
	}
	first := tb.Apply(k, msg(1, 0, nil), 0)
	if !first.Opened || first.Closed != "" || first.Ended || !sameData(first.Data, data(1)) || first.Data.Opener != "m1" {
		t.Fatalf("first message opens with its data: %+v", first)
	}
	cont := tb.Apply(k, msg(2, minute, nil), 0)
	if cont.Opened || cont.Closed != "" || !sameData(cont.Data, data(1)) {
		t.Fatalf("a continuing message keeps the opener's data: %+v", cont)
	}
	idleGap := tb.Apply(k, msg(3, minute+idle+1, nil), 0)
	if !idleGap.Opened || idleGap.Closed != ReasonIdle || idleGap.ClosedAt != hoursAgo+minute+idle || !prevIs(idleGap.Previous, first, data(1)) {
		t.Fatalf("an idle gap ends the session at last activity + timeout: %+v", idleGap)
	}
	restart := tb.Apply(k, msg(4, 2*idle, func(m *Message) { m.Intent = "START_CHAT" }), 0)
	if !restart.Opened || restart.Closed != ReasonStartChat || restart.ClosedAt != hoursAgo+2*idle || restart.Previous.ConversationID != idleGap.ConversationID {
		t.Fatalf("START_CHAT replaces the open session at its record time: %+v", restart)
	}
	carried := tb.Apply(k, msg(5, 2*idle+1, func(m *Message) { m.ChannelSessionID, m.ConversationID = "S", "C" }), 0)
	if !carried.Opened || carried.Closed != ReasonAdopted || carried.Previous.ConversationID != restart.ConversationID || carried.ConversationID != "C" {
		t.Fatalf("carried ids replace the open session: %+v", carried)
	}
	end := tb.Apply(k, msg(6, 2*idle+2, func(m *Message) { m.Intent = "END_CHAT" }), 0)
	if end.Opened || end.Closed != "" || !end.Ended || end.ConversationID != "C" || !sameData(end.Data, data(5)) {
		t.Fatalf("END_CHAT ends its own session: %+v", end)
	}
	typing := tb.Apply(k, msg(7, 2*idle+3, func(m *Message) { m.Passive = true }), 0)
	if typing.Opened || typing.Closed != "" || typing.Ended || typing.ConversationID != "" {
		t.Fatalf("a NOTIFICATION outside a session changes nothing: %+v", typing)
	}
	conv := tb.Apply(k, msg(8, 3*idle, func(m *Message) { m.Intent = "START_CONVERSATION" }), 0)
	if !conv.Opened || conv.Closed != "" {
		t.Fatalf("START_CONVERSATION after an ended session only opens: %+v", conv)
	}
	stale := tb.Apply(k, msg(9, 4*idle+1, func(m *Message) { m.Passive = true }), 0)
	if stale.Opened || stale.Closed != ReasonIdle || stale.ClosedAt != hoursAgo+4*idle || stale.Previous.ConversationID != conv.ConversationID || stale.ConversationID != "" {
		t.Fatalf("a NOTIFICATION finding the session idle ends it, without ids: %+v", stale)
	}
	// END_CHAT as the first message of a session that follows an expired one: opens and ends.
	tb2 := NewTable(Fixed(30 * time.Minute))
	tb2.Apply(k, msg(1, 0, nil), 0)
	both := tb2.Apply(k, msg(2, idle+1, func(m *Message) { m.Intent = "END_CHAT" }), 0)
	if !both.Opened || both.Closed != ReasonIdle || !both.Ended || both.ClosedAt != hoursAgo+idle {
		t.Fatalf("END_CHAT after an idle gap: expired, opened and ended: %+v", both)
	}
}

func m2(m *Message) *Message { return m }

// Proactive expiry tells which session expired, with its data, at last activity + timeout.
func TestProactiveExpiryNamesTheSession(t *testing.T) {
	tb := NewTable(Fixed(time.Minute))
	k := Key("web", "quiet")
	m := at(1, "m1", hoursAgo)
	m.Data = data(1)
	first := tb.Apply(k, m, 1_000)
	changes := tb.expireAt(1_000 + minute + 1)
	if len(changes) != 1 || !changes[0].Expired {
		t.Fatalf("one expiry: %+v", changes)
	}
	c := changes[0]
	if !prevIs(c.Previous, first, data(1)) || c.ClosedAt != hoursAgo+minute {
		t.Fatalf("expiry of %+v at %d, want %+v at %d", c.Previous, c.ClosedAt, first, hoursAgo+minute)
	}
	// The next message finds the session ended and only opens: no second end.
	next := tb.Apply(k, at(2, "m2", hoursAgo+2*minute), 2_000+minute)
	if !next.Opened || next.Closed != "" {
		t.Fatalf("after a proactive expiry the next message only opens: %+v", next)
	}
}

// A replay, in the same table or after a restore from the changelog, repeats each record's lifecycle
// changes exactly: random traffic of two sources with every intent, carried ids, NOTIFICATIONs and idle
// gaps.
func TestReplayRepeatsLifecycle(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for round := range 100 {
		tb := NewTable(Fixed(time.Minute))
		k := Key("web", "r")
		var msgs []Message
		var first []lifecycle
		var last *State
		ms := hoursAgo
		offsets := map[string]int64{}
		for i := range 24 {
			src := fmt.Sprint("in/", r.IntN(2))
			offsets[src]++
			ms += []int64{1_000, 20_000, 2 * minute}[r.IntN(3)]
			m := Message{Position: Position{Source: src, Offset: offsets[src]}, Seq: int64(i), ID: fmt.Sprint("m", i), TimeMillis: ms, EventMillis: ms, Data: data(i)}
			switch r.IntN(8) {
			case 0:
				m.Intent = "START_CHAT"
			case 1:
				m.Intent = "END_CHAT"
			case 2:
				m.Passive = true
			case 3:
				m.ChannelSessionID, m.ConversationID = fmt.Sprint("S", i%3), fmt.Sprint("C", i%3)
			}
			out := tb.Apply(k, m, int64(i))
			if out.State != nil {
				last = out.State
			}
			msgs = append(msgs, m)
			first = append(first, lifecycleOf(out))
		}
		restored := NewTable(Fixed(time.Minute))
		if err := restored.Restore(k, Encode(last), 100); err != nil {
			t.Fatal(err)
		}
		for i, m := range msgs {
			for name, table := range map[string]*Table{"same table": tb, "restored": restored} {
				again := table.Apply(k, with(m, func(m *Message) { m.Seq += 1000 }), 200)
				if !again.Replayed || again.Forgotten {
					t.Fatalf("round %d record %d (%s): not an exact replay: %+v", round, i, name, again)
				}
				if got := lifecycleOf(again); !reflect.DeepEqual(got, first[i]) {
					t.Fatalf("round %d record %d (%s) %+v:\nreplay %+v\nfirst  %+v", round, i, name, m, got, first[i])
				}
			}
		}
	}
}

func sameData(a, b Data) bool {
	return reflect.DeepEqual(a.ChannelData, b.ChannelData) && reflect.DeepEqual(a.Customer, b.Customer)
}

// prevIs reports whether p is the session first opened, with data d and first's opener.
func prevIs(p Previous, first Outcome, d Data) bool {
	return p.ChannelSessionID == first.ChannelSessionID && p.ConversationID == first.ConversationID && sameData(p.Data, d) &&
		p.Opener == first.Data.Opener && p.Opener != ""
}

// A restart does not postpone an expiry: the idle countdown resumes from the processing time of the
// session's last activity, kept in its state.
func TestRestoreKeepsTheIdleCountdown(t *testing.T) {
	tb := NewTable(Fixed(time.Minute))
	k := Key("web", "restart")
	tb.Apply(k, at(1, "m1", hoursAgo), 1_000)
	restored := NewTable(Fixed(time.Minute))
	if err := restored.Restore(k, Encode(tb.Get(k)), 50_000); err != nil {
		t.Fatal(err)
	}
	if changes := restored.expireAt(1_000 + minute); len(changes) != 0 {
		t.Fatalf("expired before its timeout: %+v", changes)
	}
	if changes := restored.expireAt(1_000 + minute + 1); len(changes) != 1 || !changes[0].Expired {
		t.Fatalf("must expire one timeout after its last activity was processed, not after the restore: %+v", changes)
	}
}

// A session opened by a record without a trusted time expires dated when it expires, never in 1970.
func TestExpiryOfAnUntimedSessionIsDatedNow(t *testing.T) {
	tb := NewTable(Fixed(time.Minute))
	tb.Apply(Key("web", "untimed"), at(1, "m1", 0), 1_000)
	now := int64(1_000) + minute + 1
	changes := tb.expireAt(now)
	if len(changes) != 1 || changes[0].ClosedAt != now {
		t.Fatalf("expiry %+v, want dated %d", changes, now)
	}
}
