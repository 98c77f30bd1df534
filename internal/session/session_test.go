package session

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

const minute = int64(60 * 1000)

// hoursAgo is a record time far behind the processing clock, as in a backlog.
var hoursAgo = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

// at is a message from source "in/0" at offset o with session time ms.
func at(o int64, id string, ms int64) Message {
	return Message{Position: Position{Source: "in/0", Offset: o}, Seq: o, ID: id, TimeMillis: ms, EventMillis: ms}
}

func with(m Message, f func(*Message)) Message { f(&m); return m }

func TestSessionLifecycle(t *testing.T) {
	tb := NewTable(Fixed(30 * time.Minute))
	k := Key("web", "cust-1")
	now := int64(0)
	first := tb.Apply(k, at(1, "m1", 0), now)
	if !first.Opened || first.ChannelSessionID == "" || first.ConversationID == "" || first.ChannelSessionID == first.ConversationID {
		t.Fatalf("first message must open a session: %+v", first)
	}
	same := tb.Apply(k, at(2, "m2", 29*minute), now)
	if same.Opened || same.ChannelSessionID != first.ChannelSessionID || same.ConversationID != first.ConversationID {
		t.Fatalf("within the idle timeout the session continues: %+v", same)
	}
	if still := tb.Apply(k, at(3, "m3", 58*minute), now); still.Opened {
		t.Fatal("activity must extend the session")
	}
	// Exactly the timeout after the last activity: still the same session; one millisecond more: a new one.
	if edge := tb.Apply(k, at(4, "m4", 88*minute), now); edge.Opened {
		t.Fatalf("at exactly the idle timeout the session continues: %+v", edge)
	}
	idle := tb.Apply(k, at(5, "m5", 118*minute+1), now)
	if !idle.Opened || idle.Closed != ReasonIdle || idle.ChannelSessionID == first.ChannelSessionID {
		t.Fatalf("after the idle timeout a new session opens: %+v", idle)
	}
	start := tb.Apply(k, with(at(6, "m6", 119*minute), func(m *Message) { m.Intent = "START_CHAT" }), now)
	if !start.Opened || start.Closed != ReasonStartChat || start.ChannelSessionID == idle.ChannelSessionID {
		t.Fatalf("START_CHAT always opens a new session: %+v", start)
	}
	end := tb.Apply(k, with(at(7, "m7", 120*minute), func(m *Message) { m.Intent = "END_CHAT" }), now)
	if end.Opened || !end.Ended || end.Closed != "" || end.ChannelSessionID != start.ChannelSessionID {
		t.Fatalf("END_CHAT is forwarded with the current ids, then closes: %+v", end)
	}
	after := tb.Apply(k, at(8, "m8", 120*minute+1), now)
	if !after.Opened || after.ChannelSessionID == start.ChannelSessionID {
		t.Fatalf("after END_CHAT the next message opens a new session, even a millisecond later: %+v", after)
	}
	other := tb.Apply(Key("web", "cust-2"), at(9, "m9", 121*minute), now)
	if other.ChannelSessionID == after.ChannelSessionID {
		t.Fatal("customers do not share sessions")
	}
	if tb.Active() != 2 {
		t.Fatalf("active = %d, want 2", tb.Active())
	}
}

func TestCarriedIdsAreAdopted(t *testing.T) {
	tb := NewTable(Fixed(30 * time.Minute))
	k := Key("wa", "4179")
	tb.Apply(k, at(1, "a", 0), 0)
	carried := tb.Apply(k, with(at(2, "b", 1), func(m *Message) { m.ChannelSessionID, m.ConversationID = "S", "C" }), 0)
	if carried.ChannelSessionID != "S" || carried.ConversationID != "C" || carried.Closed != ReasonAdopted {
		t.Fatalf("carried ids are kept: %+v", carried)
	}
	if next := tb.Apply(k, at(3, "c", 2), 0); next.ChannelSessionID != "S" || next.ConversationID != "C" {
		t.Fatalf("and adopted as the current session: %+v", next)
	}
	half := tb.Apply(k, with(at(4, "d", 3), func(m *Message) { m.ConversationID = "C2" }), 0)
	if half.ChannelSessionID != "S" || half.ConversationID != "C2" {
		t.Fatalf("a missing id is completed from the active session: %+v", half)
	}
}

// script is a customer's traffic with every kind of boundary, from two source partitions (an unkeyed
// connector), plus passive notifications.
func script(base int64) []Message {
	var ms []Message
	add := func(src string, o int64, id, intent string, t int64, passive bool) {
		ms = append(ms, Message{Position: Position{Source: src, Offset: o}, Seq: int64(len(ms)), ID: id, Intent: intent,
			TimeMillis: base + t, Passive: passive})
	}
	add("in/0", 10, "a", "", 0, false)
	add("in/1", 3, "typing", "", minute, true)
	add("in/1", 4, "b", "START_CHAT", 2*minute, false)
	add("in/0", 11, "c", "", 3*minute, false)
	add("in/0", 12, "d", "END_CHAT", 4*minute, false)
	add("in/1", 5, "typing2", "", 5*minute, true)
	add("in/0", 13, "e", "", 6*minute, false)
	add("in/1", 6, "f", "START_CONVERSATION", 7*minute, false)
	add("in/0", 14, "g", "", 50*minute, false) // idle in record time
	add("in/1", 7, "h", "", 51*minute, false)
	return ms
}

func TestDuplicatesFromEitherStageGetTheirFirstIds(t *testing.T) {
	const idle = 30 * time.Minute
	k := Key("web", "x")
	tb := NewTable(Fixed(idle))
	msgs := script(0)
	first := make([]Outcome, len(msgs))
	var last *State
	// tail is how many records before the latest are replayed (an uncommitted tail after a crash).
	const tail = 3
	check := func(name string, tb *Table, upto int, shift int64) {
		t.Helper()
		for i := max(0, upto-tail); i <= upto; i++ {
			m := msgs[i]
			m.Seq += shift // a stage-1 duplicate sits at a new repartition offset
			again := tb.Apply(k, m, 0)
			if !again.Replayed || again.Forgotten || again.ChannelSessionID != first[i].ChannelSessionID || again.ConversationID != first[i].ConversationID {
				t.Errorf("%s, after %s: replay of %s: got %+v, first time %q/%q", name, msgs[upto].ID, m.ID, again,
					first[i].ChannelSessionID, first[i].ConversationID)
			}
		}
	}
	for i, m := range msgs {
		first[i] = tb.Apply(k, m, 0)
		if first[i].State != nil {
			last = first[i].State
		}
		check("same table, stage-2 duplicates", tb, i, 0)
		check("same table, stage-1 duplicates", tb, i, 1000)
		restored := NewTable(Fixed(idle))
		if err := restored.Restore(k, Encode(last), 0); err != nil {
			t.Fatal(err)
		}
		check("after restore", restored, i, 1000)
	}
	if first[1].ConversationID != first[0].ConversationID || first[5].ChannelSessionID != "" {
		t.Fatalf("typing carries the ids of an open session and none after END_CHAT: %+v %+v", first[1], first[5])
	}
	// A fresh table given the same messages decides the same ids (determinism, not memory).
	fresh := NewTable(Fixed(idle))
	for i, m := range msgs {
		if got := fresh.Apply(k, m, 5*minute); got.ChannelSessionID != first[i].ChannelSessionID {
			t.Fatalf("%s: not deterministic", m.ID)
		}
	}
}

func TestDuplicateEndChatDoesNotCloseTheNextConversation(t *testing.T) {
	tb := NewTable(Fixed(30 * time.Minute))
	k := Key("web", "y")
	end := with(at(1, "end", 0), func(m *Message) { m.Intent = "END_CHAT" })
	tb.Apply(k, at(0, "hello", 0), 0)
	ended := tb.Apply(k, end, 0)
	next := tb.Apply(k, at(2, "next", minute), 0)
	dup := tb.Apply(k, with(end, func(m *Message) { m.Seq = 99 }), 0)
	if !dup.Replayed || dup.ConversationID != ended.ConversationID {
		t.Fatalf("duplicate END_CHAT: %+v, first %+v", dup, ended)
	}
	if later := tb.Apply(k, at(3, "later", 2*minute), 0); later.Opened || later.ConversationID != next.ConversationID {
		t.Fatalf("the conversation after END_CHAT must continue: %+v vs %+v", later, next)
	}
}

func TestReplayOlderThanTheWindowIsFlagged(t *testing.T) {
	tb := NewTable(Fixed(30 * time.Minute))
	k := Key("web", "z")
	for i := int64(0); i < 2*recentLimit; i++ {
		tb.Apply(k, with(at(i, fmt.Sprint(i), i), func(m *Message) { m.Intent = "START_CHAT" }), 0)
	}
	if got := tb.Apply(k, at(0, "0", 0), 0); !got.Replayed || !got.Forgotten {
		t.Fatalf("a replay older than every remembered decision must say so: %+v", got)
	}
	if got := tb.Apply(k, at(2*recentLimit-1, "x", 0), 0); !got.Replayed || got.Forgotten {
		t.Fatalf("a recent replay is remembered: %+v", got)
	}
}

// A backlog decides exactly as live traffic: the same messages hours old, with housekeeping running on
// the wall clock all along, give the same ids.
func TestBacklogDecidesAsLive(t *testing.T) {
	const idle = 5 * time.Minute
	run := func(base int64, wall func(i int) int64) []Outcome {
		tb := NewTable(Fixed(idle))
		var outs []Outcome
		for c := 0; c < 3; c++ {
			k := Key("web", fmt.Sprint("c", c))
			for i, m := range script(base) {
				now := wall(i)
				tb.expireAt(now)
				outs = append(outs, tb.Apply(k, m, now))
			}
		}
		return outs
	}
	// Live: the processing clock follows record time.
	live := run(hoursAgo, func(i int) int64 { return hoursAgo + script(0)[i].TimeMillis + 100 })
	// Backlog: records three hours old, processed within a second.
	backlog := run(hoursAgo, func(i int) int64 { return hoursAgo + 3*60*minute + int64(i) })
	for i := range live {
		if live[i].ChannelSessionID != backlog[i].ChannelSessionID || live[i].ConversationID != backlog[i].ConversationID {
			t.Fatalf("message %d: live %+v, backlog %+v", i, live[i], backlog[i])
		}
	}
}

func TestProactiveExpiryNeedsBothClocks(t *testing.T) {
	const idle = time.Minute
	tb := NewTable(Fixed(idle))
	k := Key("web", "p")
	// Record time three hours behind; processed now.
	now := hoursAgo + 3*60*minute
	first := tb.Apply(k, at(1, "a", hoursAgo), now)
	if got := tb.expireAt(now + minute - 1); len(got) != 0 {
		t.Fatalf("processing time has not passed the timeout: %+v", got)
	}
	if got := tb.expireAt(now + minute + 1); len(got) != 1 || !got[0].Expired || got[0].State.Open || got[0].State.Ended != ReasonIdle {
		t.Fatalf("both clocks past the timeout: the session ends: %+v", got)
	}
	if tb.Active() != 0 {
		t.Fatalf("active = %d after expiry", tb.Active())
	}
	// Once ended, never reopened: even a message within the timeout in record time gets a new session.
	next := tb.Apply(k, at(2, "b", hoursAgo+1), now+minute+2)
	if !next.Opened || next.ConversationID == first.ConversationID {
		t.Fatalf("an expired session must not reopen: %+v", next)
	}
	// A connector clock half an hour ahead: its next message would be stamped ahead too, so idle time is
	// counted on this instance's clock, not against the future stamp.
	tb2 := NewTable(Fixed(idle))
	tb2.Apply(k, at(1, "a", now+30*minute), now)
	if got := tb2.expireAt(now + minute - 1); len(got) != 0 {
		t.Fatalf("not idle for a timeout yet: %+v", got)
	}
	if got := tb2.expireAt(now + minute + 1); len(got) != 1 {
		t.Fatalf("idle for a timeout after a future-stamped message: %+v", got)
	}
}

func TestExpireForgetsEndedSessionsIncrementally(t *testing.T) {
	const idle = time.Minute
	tb := NewTable(Fixed(idle)).WithReplayWindow(idle)
	const n = 10000
	for i := 0; i < n; i++ {
		tb.Apply(Key("web", fmt.Sprint(i)), at(int64(i), fmt.Sprint(i), int64(i)), int64(i))
	}
	// Half of them are due: only those are touched.
	got := tb.expireAt(minute + n/2)
	if len(got) != n/2 {
		t.Fatalf("expired %d, want %d", len(got), n/2)
	}
	if tb.Active() != n/2 || tb.Len() != n {
		t.Fatalf("active %d, held %d", tb.Active(), tb.Len())
	}
	// Twice the timeout: every one forgotten, with a tombstone each.
	got = tb.expireAt(2*minute + n + 1)
	tombstones := 0
	for _, c := range got {
		if c.State == nil {
			tombstones++
		}
	}
	got = append(got, tb.expireAt(3*minute+n+1)...)
	for _, c := range got {
		if c.State == nil {
			tombstones++
		}
	}
	if tb.Len() != 0 || tb.Active() != 0 || tombstones < n/2 {
		t.Fatalf("left %d keys, %d active, %d tombstones", tb.Len(), tb.Active(), tombstones)
	}
}

func TestPassiveMessagesNeverOpenOrExtend(t *testing.T) {
	tb := NewTable(Fixed(time.Minute))
	k := Key("web", "typing")
	typing := func(o int64, ms int64) Message {
		return with(at(o, fmt.Sprint("t", o), hoursAgo+ms), func(m *Message) { m.Passive = true })
	}
	if got := tb.Apply(k, typing(1, 0), 0); got.ChannelSessionID != "" || got.Opened {
		t.Fatalf("typing without a session opens nothing: %+v", got)
	}
	open := tb.Apply(k, at(2, "hi", hoursAgo), 0)
	if got := tb.Apply(k, typing(3, 50_000), 0); got.ChannelSessionID != open.ChannelSessionID {
		t.Fatalf("typing inside a session carries its ids: %+v", got)
	}
	// 70 s after the last message (typing at 50 s did not extend it): a new session.
	if got := tb.Apply(k, at(4, "again", hoursAgo+70_000), 0); !got.Opened {
		t.Fatalf("typing must not extend a session: %+v", got)
	}
	// Typing after the timeout in record time ends the session; it passes without ids.
	if got := tb.Apply(k, typing(5, 200_000), 0); got.ChannelSessionID != "" || got.Closed != ReasonIdle {
		t.Fatalf("typing after the timeout: %+v", got)
	}
	// Its processing time does not keep the session open either.
	tb2 := NewTable(Fixed(time.Minute))
	tb2.Apply(k, at(1, "hi", hoursAgo), hoursAgo)
	tb2.Apply(k, typing(2, 30_000), hoursAgo+50_000)
	if got := tb2.expireAt(hoursAgo + minute + 1); len(got) != 1 || !got[0].Expired {
		t.Fatalf("typing must not delay proactive expiry: %+v", got)
	}
}

// A message whose time is unknown (0) continues an open session whatever its last activity, never ends
// one by inactivity, and leaves the last activity alone; the next timed message is decided by its time.
func TestUnknownTimeNeitherEndsNorExtends(t *testing.T) {
	tb := NewTable(Fixed(time.Minute))
	k := Key("web", "unknown")
	first := tb.Apply(k, at(1, "a", hoursAgo), 0)
	if got := tb.Apply(k, at(2, "b", 0), 0); got.Opened || got.ConversationID != first.ConversationID {
		t.Fatalf("an untimed message continues the open session: %+v", got)
	}
	if got := tb.Get(k).LastActivity; got != hoursAgo {
		t.Fatalf("last activity moved to %d", got)
	}
	if got := tb.Apply(k, at(3, "c", hoursAgo+minute+1), 0); !got.Opened || got.Closed != ReasonIdle {
		t.Fatalf("the next timed message past the timeout opens a new session: %+v", got)
	}
	// Opened untimed, the session takes the time of its first timed message.
	tb2 := NewTable(Fixed(time.Minute))
	open := tb2.Apply(k, at(1, "x", 0), 0)
	if got := tb2.Apply(k, at(2, "y", hoursAgo), 0); got.Opened || got.ConversationID != open.ConversationID {
		t.Fatalf("the first timed message continues a session opened untimed: %+v", got)
	}
	if got := tb2.Apply(k, at(3, "z", hoursAgo+minute+1), 0); !got.Opened {
		t.Fatalf("then its time counts: %+v", got)
	}
}

func TestRestoreKeepsTheHighestPosition(t *testing.T) {
	tb := NewTable(Fixed(time.Minute))
	k := Key("web", "r")
	older := Encode(&State{ChannelSessionID: "old", ConversationID: "old", Open: true, Seq: 5})
	newer := Encode(&State{ChannelSessionID: "new", ConversationID: "new", Open: true, Seq: 9})
	for _, order := range [][][]byte{{older, newer}, {newer, older}} {
		tb := NewTable(Fixed(time.Minute))
		for _, v := range order {
			if err := tb.Restore(k, v, 0); err != nil {
				t.Fatal(err)
			}
		}
		if got := tb.Get(k); got == nil || got.ChannelSessionID != "new" {
			t.Fatalf("restore kept %+v", got)
		}
	}
	if err := tb.Restore(k, newer, 0); err != nil {
		t.Fatal(err)
	}
	tooMany := `{"r":[{}` + strings.Repeat(`,{}`, recentLimit) + `]}`
	for _, bad := range []string{"{broken", `{"src":["a"],"a":[]}`, `"string"`, tooMany} {
		err := tb.Restore(k, []byte(bad), 0)
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: want ErrCorrupt, got %v", bad, err)
		}
		if tb.Get(k) != nil || tb.Active() != 0 {
			t.Fatalf("%s: a corrupt state must leave the key fresh", bad)
		}
	}
	if err := tb.Restore(k, newer, 0); err != nil || tb.Restore(k, nil, 0) != nil || tb.Len() != 0 || tb.Active() != 0 {
		t.Fatalf("a tombstone deletes: %v %d", err, tb.Len())
	}
}

func TestKeysAndIds(t *testing.T) {
	if Key("ab", "c") == Key("a", "bc") {
		t.Fatal("keys must not collide across the boundary")
	}
	for _, sid := range []string{"", "web", "https://shop.example.com:8443/x", "12:34"} {
		if got := ServiceIdentifier(Key(sid, "cust:1")); got != sid {
			t.Errorf("ServiceIdentifier(Key(%q)) = %q", sid, got)
		}
	}
	for _, k := range []string{"conversation:abc", "5:ab", "x:y", ""} {
		if got := ServiceIdentifier(k); got != "" {
			t.Errorf("ServiceIdentifier(%q) = %q, want empty", k, got)
		}
	}
	a, b := DeriveID("x", "y"), DeriveID("x", "y")
	if a != b || a == DeriveID("xy") {
		t.Fatal("derived ids must be stable and separate their parts")
	}
}

func TestEncodeMatchesEncodingJSON(t *testing.T) {
	states := []*State{
		{ChannelSessionID: "s", ConversationID: "c", Open: true, LastActivity: 5, Seq: 9},
		{ChannelSessionID: `we"ird\id<&>`, ConversationID: "ü-ñ", Ended: ReasonEndChat, Sources: []string{"a/0", "b\n/1"}, Applied: []int64{3, -1},
			Recent: []Decision{{After: []int64{1}, ChannelSessionID: "a", ConversationID: "b"}, {ChannelSessionID: "x\ny", ConversationID: "z"}}},
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 { // states as Apply builds them
		tb := NewTable(Fixed(time.Minute))
		var st *State
		for i := range 20 {
			m := at(int64(i), fmt.Sprint(r.IntN(5)), r.Int64N(10*minute))
			m.Position.Source = fmt.Sprint("in/", r.IntN(3))
			m.Passive = r.IntN(4) == 0
			m.Intent = []string{"", "", "START_CHAT", "END_CHAT"}[r.IntN(4)]
			if r.IntN(2) == 0 {
				m.Data = data(i)
			}
			if out := tb.Apply("k", m, 0); out.State != nil {
				st = out.State
			}
		}
		states = append(states, st)
	}
	for _, st := range states {
		want, _ := json.Marshal(st)
		if got := Encode(st); string(got) != string(want) {
			t.Fatalf("Encode = %s, encoding/json = %s", got, want)
		}
		var back State
		if err := json.Unmarshal(Encode(st), &back); err != nil || !reflect.DeepEqual(normalize(back), normalize(*st)) {
			t.Fatalf("round trip: %v\n%+v\n%+v", err, back, *st)
		}
	}
}

// normalize treats nil and empty slices alike for comparison.
func normalize(st State) State {
	b, _ := json.Marshal(st)
	var out State
	_ = json.Unmarshal(b, &out)
	return out
}

// expireAt is Expire with record time caught up with the processing clock (live, nothing held upstream).
func (t *Table) expireAt(now int64) []Change { return t.Expire(now, now) }

// Records held upstream (a broker outage, a stalled ingest member, a backlog): the wall clock runs on,
// the upstream watermark does not. The session must not expire until the watermark passes its timeout,
// and a late record within the timeout in record time continues it.
func TestExpiryWaitsForTheUpstreamWatermark(t *testing.T) {
	const idle = time.Minute
	tb := NewTable(Fixed(idle))
	k := Key("web", "held")
	wall := hoursAgo + 10*minute
	first := tb.Apply(k, at(1, "a", hoursAgo), wall)
	for i := int64(1); i <= 5; i++ { // hours pass; the watermark is stuck before the last activity
		if got := tb.Expire(wall+i*60*minute, wall-1); len(got) != 0 {
			t.Fatalf("expired while the watermark stood still: %+v", got)
		}
	}
	// At exactly the timeout after the last activity was processed: still open.
	if got := tb.Expire(wall+6*60*minute, wall+minute); len(got) != 0 {
		t.Fatalf("at exactly the timeout the session is open: %+v", got)
	}
	// The held message arrives, 50 s after the previous one in record time: same conversation.
	now := wall + 6*60*minute
	late := tb.Apply(k, at(2, "b", hoursAgo+50_000), now)
	if late.Opened || late.ConversationID != first.ConversationID {
		t.Fatalf("a held message within the timeout continues the session: %+v", late)
	}
	if got := tb.Expire(now+minute+1, now+minute); len(got) != 0 {
		t.Fatalf("the watermark has not passed the new timeout: %+v", got)
	}
	if got := tb.Expire(now+minute+1, now+minute+1); len(got) != 1 || !got[0].Expired {
		t.Fatalf("watermark and clock past the timeout: %+v", got)
	}
	// Forgotten after twice the timeout and the replay window, both on the watermark too.
	forget := now + max(2*minute, DefaultReplayWindow.Milliseconds())
	if got := tb.Expire(forget+1, forget); len(got) != 0 || tb.Len() != 1 {
		t.Fatalf("forgotten before the watermark passed: %+v", got)
	}
	if got := tb.Expire(forget+1, forget+1); len(got) != 1 || got[0].State != nil || tb.Len() != 0 || tb.Active() != 0 {
		t.Fatalf("forgotten once both passed: %+v (held %d, active %d)", got, tb.Len(), tb.Active())
	}
}

// Other customers' live traffic on the same partition does not end a session whose next message is held
// upstream: only the watermark counts.
func TestOtherTrafficDoesNotExpireAHeldSession(t *testing.T) {
	const idle = time.Minute
	tb := NewTable(Fixed(idle))
	wall := hoursAgo
	pat := tb.Apply(Key("web", "pat"), at(1, "p1", wall), wall)
	for i := int64(1); i <= 20; i++ { // another customer, live, every 10 s; the watermark is stuck
		now := wall + i*10_000
		tb.Apply(Key("web", "other"), at(1+i, fmt.Sprint("o", i), now), now)
		if got := tb.Expire(now, wall+1); len(got) != 0 {
			t.Fatalf("expired with the watermark held: %+v", got)
		}
	}
	held := tb.Apply(Key("web", "pat"), at(99, "p2", wall+1000), wall+200_000)
	if held.Opened || held.ConversationID != pat.ConversationID {
		t.Fatalf("the held message must continue pat's conversation: %+v", held)
	}
}

// A session opened by an untimed message waits for the watermark like any other.
func TestUntimedSessionWaitsForTheWatermark(t *testing.T) {
	tb := NewTable(Fixed(time.Minute))
	k := Key("web", "untimed")
	first := tb.Apply(k, at(1, "a", 0), hoursAgo)
	if got := tb.Expire(hoursAgo+10*minute, hoursAgo); len(got) != 0 {
		t.Fatalf("an untimed session expired with the watermark held: %+v", got)
	}
	if got := tb.Apply(k, at(2, "b", 0), hoursAgo+10*minute); got.Opened || got.ConversationID != first.ConversationID {
		t.Fatalf("the held untimed message continues the session: %+v", got)
	}
}

// A duplicate arriving after the key's session ended, later than twice a short idle timeout but within
// the replay window, still finds its first ids: the key is not forgotten before the window passed.
func TestEndedKeyKeptForTheReplayWindow(t *testing.T) {
	tb := NewTable(Fixed(5 * time.Second))
	k := Key("web", "short")
	now := hoursAgo
	tb.Apply(k, at(1, "a", now), now)
	b := tb.Apply(k, at(2, "b", now+1000), now+1000)
	tb.Apply(k, with(at(3, "end", now+2000), func(m *Message) { m.Intent = "END_CHAT" }), now+2000)
	for ms := int64(0); ms <= 60_000; ms += 200 {
		tb.expireAt(now + 2000 + ms)
	}
	dup := tb.Apply(k, with(at(2, "b", now+1000), func(m *Message) { m.Seq = 99 }), now+62_000)
	if !dup.Replayed || dup.ConversationID != b.ConversationID {
		t.Fatalf("duplicate of b a minute later: %+v (first %+v)", dup, b)
	}
	if got := tb.expireAt(now + 2000 + DefaultReplayWindow.Milliseconds() + 1); len(got) != 1 || tb.Len() != 0 {
		t.Fatalf("forgotten once the window passed: %+v", got)
	}
}

// States written after a restore must win over every state restored, whichever input their records
// came from: the sequence resumes above the highest restored, not from an input offset.
func TestNextSeqResumesAboveRestoredStates(t *testing.T) {
	tb := NewTable(Fixed(time.Hour))
	for key, seq := range map[string]int64{"a": 7, "b": 41, "c": 3} {
		if err := tb.Restore(key, Encode(&State{ChannelSessionID: "s", ConversationID: "c", Open: true, Seq: seq}), 0); err != nil {
			t.Fatal(err)
		}
	}
	// A late write of the previous owner (its sequence a batch beyond what had landed) must lose.
	late := Encode(&State{ChannelSessionID: "late", ConversationID: "late", Open: true, Seq: 41 + 500})
	tb.Restored()
	if got := tb.NextSeq(); got != 42+SeqGap {
		t.Fatalf("next seq %d after restoring up to 41, want 42+SeqGap", got)
	}
	out := tb.Apply("c", Message{Position: Position{Source: "in/0", Offset: 0}, Seq: tb.NextSeq(), ID: "m", TimeMillis: 1}, 0)
	again := NewTable(Fixed(time.Hour))
	for _, v := range [][]byte{Encode(out.State), Encode(&State{ChannelSessionID: "s", ConversationID: "c", Open: true, Seq: 3}), late} {
		if err := again.Restore("c", v, 0); err != nil {
			t.Fatal(err)
		}
	}
	if got := again.Get("c"); got.Seq != 43+SeqGap || got.ChannelSessionID == "late" {
		t.Fatalf("restore kept seq %d (%s), want this owner's state, seq 43+SeqGap", got.Seq, got.ChannelSessionID)
	}
}
