package session

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// longTopic is a distinct auto-created connector topic name of Kafka's longest (249 characters).
func longTopic(i int) string {
	s := fmt.Sprint("cim.inbound.", i, ".")
	return s + strings.Repeat("t", 249-len(s))
}

// The attack the source list allowed: typing notifications of one key from hundreds of distinct
// topics. Every state written stays within the cap, however many topics there are.
func TestManySourcesNeverExceedTheCap(t *testing.T) {
	const limit = 64 << 10
	tb := NewTable(Fixed(30 * time.Minute)).WithMaxStateBytes(limit)
	k := Key("web", "c")
	dropped := 0
	for i := range 400 {
		m := Message{Position: Position{Source: longTopic(i) + "/0", Offset: int64(i)}, Seq: int64(i), ID: fmt.Sprint("n", i),
			TimeMillis: hoursAgo, EventMillis: hoursAgo, Passive: true}
		out := tb.Apply(k, m, 0)
		dropped += out.SourcesDropped
		if n := len(Encode(out.State)); n > limit {
			t.Fatalf("record %d: %d bytes over the cap of %d, %d sources", i, n, limit, len(out.State.Sources))
		}
	}
	if n := len(tb.Get(k).Sources); n > maxSources || dropped != 400-n {
		t.Fatalf("%d sources kept, %d counted dropped of 400", n, dropped)
	}
}

// Sessions of one key opened from many source partitions (a connector spreading a customer over
// partitions): every decision copies the applied offsets, which must not crowd the cap either.
func TestDecisionsOverManySourcesStayUnderTheCap(t *testing.T) {
	const limit = 64 << 10
	tb := NewTable(Fixed(30 * time.Minute)).WithMaxStateBytes(limit)
	k := Key("web", "c")
	for i := range 600 {
		m := at(1<<40+int64(i), fmt.Sprint("m", i), hoursAgo+int64(i))
		m.Position.Source = longTopic(i%300) + "/0"
		m.Intent = "START_CHAT"
		out := tb.Apply(k, m, 0)
		if n := len(Encode(out.State)); n > limit {
			t.Fatalf("record %d: %d bytes over the cap of %d", i, n, limit)
		}
	}
}

// Even the newest decision alone does not fit a cap this small (ids a foreign producer on the internal
// topic could send): the state written still never exceeds the cap.
func TestStateThatCannotFitNeverExceedsTheCap(t *testing.T) {
	const limit = 8 << 10
	tb := NewTable(Fixed(30 * time.Minute)).WithMaxStateBytes(limit)
	k := Key("web", "c")
	huge := strings.Repeat("<", 4<<10) // 24 KiB escaped
	for i := range 3 {
		m := at(int64(i), fmt.Sprint("m", i), hoursAgo+int64(i))
		m.ChannelSessionID, m.ConversationID = huge+fmt.Sprint(i), huge
		out := tb.Apply(k, m, 0)
		if out.ConversationID != m.ConversationID {
			t.Fatalf("record %d: the message still gets its ids: %q", i, out.ConversationID)
		}
		if n := len(Encode(out.State)); n > limit || !out.Reset {
			t.Fatalf("record %d: %d bytes (cap %d), reset %v", i, n, limit, out.Reset)
		}
	}
	// The message after a reset is decided on what was kept: the session's ids (these fit).
	small := with(at(10, "small", hoursAgo+10), func(m *Message) { m.ChannelSessionID, m.ConversationID = "s", "c" })
	tb.Apply(k, small, 0)
	if out := tb.Apply(k, at(11, "next", hoursAgo+11), 0); out.ConversationID != "c" || out.Reset {
		t.Fatalf("after a reset the session goes on: %s", brief(out))
	}
}

// A source dropped for room is forgotten: once it sends again, its records from before are replays
// older than every decision (current ids, flagged Forgotten), never answered as exact with ids some
// later decision gave. The source of the record that opened the current session is kept.
func TestDroppedSourceIsForgottenWhenItReturns(t *testing.T) {
	tb := NewTable(Fixed(30 * time.Minute))
	k := Key("web", "c")
	open := with(at(1, "open", hoursAgo), func(m *Message) { m.Intent = "START_CHAT"; m.Position.Source = "open/0" })
	first := tb.Apply(k, open, 0)
	tb.Apply(k, at(5, "in", hoursAgo), 0) // continues the session, from in/0
	dropped := 0
	for i := range 400 { // crowd in/0 out
		m := Message{Position: Position{Source: longTopic(i) + "/0", Offset: int64(i)}, Seq: int64(10 + i), ID: fmt.Sprint("n", i),
			TimeMillis: hoursAgo + 1, EventMillis: hoursAgo + 1, Passive: true}
		dropped += tb.Apply(k, m, 0).SourcesDropped
	}
	if st := tb.Get(k); len(st.Sources) > maxSources || st.source("open/0") < 0 || st.source("in/0") >= 0 || dropped == 0 {
		t.Fatalf("%d sources kept, %d dropped; open/0 at %d, in/0 at %d", len(st.Sources), dropped, st.source("open/0"), st.source("in/0"))
	}
	next := tb.Apply(k, with(at(10, "next", hoursAgo+2), func(m *Message) { m.Intent = "START_CHAT" }), 0)
	if next.Replayed || next.ConversationID == first.ConversationID {
		t.Fatalf("a new record of the source is applied: %s", brief(next))
	}
	if again := tb.Apply(k, at(5, "in", hoursAgo), 0); !again.Replayed || !again.Forgotten || again.ConversationID != next.ConversationID {
		t.Fatalf("a record of a dropped source, before it returned, must be a forgotten replay: %s", brief(again))
	}
	if again := tb.Apply(k, open, 0); !again.Replayed || again.Forgotten || again.ConversationID != first.ConversationID {
		t.Fatalf("the record that opened the session before still replays exactly: %s", brief(again))
	}
}

// The cap never drops the decision that opened the current session while keeping only the END_CHAT
// that closed it: both replay exactly (STARTED and ENDED repeated byte for byte).
func TestCapKeepsWhatAnEndChatReplayNeeds(t *testing.T) {
	const limit = 64 << 10
	tb := NewTable(Fixed(30 * time.Minute)).WithMaxStateBytes(limit)
	k := Key("web", "c")
	for i := range 200 { // sources crowd the cap
		m := Message{Position: Position{Source: longTopic(i) + "/0", Offset: int64(i)}, Seq: int64(i), ID: fmt.Sprint("n", i),
			TimeMillis: hoursAgo, EventMillis: hoursAgo, Passive: true}
		tb.Apply(k, m, 0)
	}
	startMsg := with(at(1000, idOf("start", 0), hoursAgo+1), func(m *Message) { m.Intent = "START_CHAT"; m.Data = bigData(0) })
	endMsg := with(at(1001, idOf("end", 0), hoursAgo+2), func(m *Message) { m.Intent = "END_CHAT" })
	start, end := tb.Apply(k, startMsg, 0), tb.Apply(k, endMsg, 0)
	if n := len(Encode(end.State)); n > limit {
		t.Fatalf("%d bytes over the cap", n)
	}
	if got := tb.Apply(k, startMsg, 0); !got.Replayed || got.Forgotten || !got.Opened || got.ConversationID != start.ConversationID ||
		got.Data.Opener != start.Data.Opener || !sameData(got.Data, start.Data) {
		t.Fatalf("START_CHAT replays as %s, first %s", brief(got), brief(start))
	}
	if got := tb.Apply(k, endMsg, 0); !got.Replayed || got.Forgotten || !got.Ended || got.EndedAt != end.EndedAt ||
		got.ConversationID != end.ConversationID || got.Data.Opener != start.Data.Opener {
		t.Fatalf("END_CHAT replays as %s, first %s", brief(got), brief(end))
	}
}

// brief is what a failure needs to tell of an outcome (its data can be kilobytes).
func brief(o Outcome) string {
	return fmt.Sprintf("{replayed %v forgotten %v opened %v ended %v at %d conv %s opener %.12q}", o.Replayed, o.Forgotten, o.Opened, o.Ended, o.EndedAt, o.ConversationID, o.Data.Opener)
}

// encodedLen is exactly len(Encode): for strings of every escape (control bytes, quotes, HTML, invalid
// UTF-8, U+2028), numbers of every sign and length, and every optional field.
func TestEncodedLenIsExact(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	alphabet := []string{"a", "Z", "<", ">", "&", "\"", "\\", "\n", "\t", "\b", "\f", "\x01", "\x1f", "\x7f", "é", "€", "\u2028", "\u2029", "\xff", "\xc3", "😀"}
	str := func() string {
		var b strings.Builder
		for range r.IntN(12) {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		return b.String()
	}
	num := func() int64 {
		return []int64{0, 1, -1, 9, 10, -10, 99, 1 << 40, -(1 << 62), math.MaxInt64, math.MinInt64}[r.IntN(11)]
	}
	nums := func() []int64 {
		var v []int64
		for range r.IntN(4) {
			v = append(v, num())
		}
		return v
	}
	for i := range 2000 {
		st := State{ChannelSessionID: str(), ConversationID: str(), Open: r.IntN(2) == 0, Ended: Reason(str()),
			LastActivity: num(), Seq: num(), Running: num(), Seen: num()}
		for range r.IntN(3) {
			st.Sources = append(st.Sources, str())
			st.Applied = append(st.Applied, num())
		}
		for range r.IntN(4) {
			d := Decision{After: nums(), ChannelSessionID: str(), ConversationID: str(), At: num(), By: nums(),
				Closed: Reason(str()), ClosedAt: num(), Data: Data{Opener: str(), OpenedAt: num()}}
			if r.IntN(2) == 0 {
				d.ChannelData, d.Customer = json.RawMessage(`{"a":"<"}`), json.RawMessage(`{}`)
			}
			st.Recent = append(st.Recent, d)
		}
		if got, want := st.encodedLen(), len(Encode(&st)); got != want {
			t.Fatalf("state %d: encodedLen %d, encoded %d: %s", i, got, want, Encode(&st))
		}
	}
}
