package inbound

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/session"
	"github.com/cimstream/cimstream/internal/stream"
)

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

// clock is a processing clock the test moves.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

type sessionCounts struct {
	nopSessions
	untrusted map[string]int
	corrupt   int
	replays   int
	forgotten int
}

func (s *sessionCounts) UntrustedTime(r string) { s.untrusted[r]++ }
func (s *sessionCounts) StateCorrupt()          { s.corrupt++ }
func (s *sessionCounts) Replayed(remembered bool) {
	s.replays++
	if !remembered {
		s.forgotten++
	}
}

// pipe runs records through both stages as the broker would carry them: stage 1's output becomes a
// repartition record with the next offset; a zero time is stamped with the processing clock, as
// kafka-go does.
type pipe struct {
	n   *Normalizer
	e   *Enricher
	clk *clock
	seq int64
	t   *testing.T
}

func newPipe(t *testing.T, idle time.Duration, obs SessionObserver) *pipe {
	clk := &clock{now: time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)}
	return &pipe{t: t, clk: clk, n: NewNormalizer(testTopics, 1<<20, nil),
		e: NewEnricher(testTopics, "sessions", 0, session.Fixed(idle), obs, clk.Now)}
}

func (p *pipe) repartition(r stream.Record) stream.Record {
	p.t.Helper()
	out := only(p.t, p.n.Process(r))
	if out.Topic != testTopics.Repartition {
		p.t.Fatalf("stage 1 sent %s to %s", out.Value, out.Topic)
	}
	ts := out.Time
	if ts.IsZero() {
		ts = p.clk.now
	}
	p.seq++
	return stream.Record{Topic: "rep", Offset: p.seq, Key: out.Key, Value: out.Value, Headers: out.Headers, Time: ts}
}

// ccm runs stage 2 and returns the CCM output.
func (p *pipe) ccm(r stream.Record) stream.Output {
	p.t.Helper()
	for _, o := range p.e.Process(r).Outputs {
		if o.Topic == testTopics.CCM {
			return o
		}
	}
	p.t.Fatal("no CCM output")
	return stream.Output{}
}

type enriched struct {
	Header struct {
		Timestamp        int64  `json:"timestamp"`
		ChannelSessionID string `json:"channelSessionId"`
		ConversationID   string `json:"conversationId"`
	} `json:"header"`
}

func decodeOut(t *testing.T, v []byte) enriched {
	t.Helper()
	var e enriched
	if err := json.Unmarshal(v, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

func plain(customer, extra string) string {
	return `{"header":{"sender":{"id":"w","type":"CONNECTOR","senderName":"W"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"` +
		customer + `"}` + extra + `},"body":{"type":"PLAIN","markdownText":"hi"}}`
}

func connectorRecord(offset int64, value string, ts time.Time) stream.Record {
	return stream.Record{Topic: "cim.inbound.web", Partition: 1, Offset: offset, Value: []byte(value), Time: ts}
}

func TestUntrustedRecordTimes(t *testing.T) {
	obs := &sessionCounts{untrusted: map[string]int{}}
	p := newPipe(t, time.Minute, obs)
	now := p.clk.now
	// A record without a timestamp (kafka-go reads <= 0 as the zero time), then one dated 2099.
	zero := p.ccm(p.repartition(connectorRecord(1, plain("a", ""), time.Time{})))
	if got := decodeOut(t, zero.Value).Header.Timestamp; got != 0 {
		t.Errorf("header.timestamp of a record without a time = %d, want 0 (never negative)", got)
	}
	if zero.Time.UnixMilli() <= 0 {
		t.Errorf("output record time %v must be positive", zero.Time)
	}
	future := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	far := p.ccm(p.repartition(connectorRecord(2, plain("b", ""), future)))
	if far.Time.After(now.Add(MaxFutureSkew)) {
		t.Errorf("a record dated 2099 must not become session time: output time %v", far.Time)
	}
	if obs.untrusted[UntrustedNotPositive] != 1 || obs.untrusted[UntrustedFuture] != 1 {
		t.Errorf("untrusted times not counted: %v", obs.untrusted)
	}
	// The 2099 session must not stay open for good: it ends once the clocks pass its timeout.
	p.clk.now = now.Add(2 * time.Minute)
	if outs := p.e.Expire(p.clk.now); len(outs) != 2 || p.e.table.Active() != 0 {
		t.Fatalf("both sessions must expire: %d outputs, %d active", len(outs), p.e.table.Active())
	}
	// An hour ahead is still trusted (clock skew of connectors).
	p2 := newPipe(t, time.Minute, obs)
	skewed := p2.ccm(p2.repartition(connectorRecord(1, plain("c", ""), p2.clk.now.Add(59*time.Minute))))
	if !skewed.Time.Equal(p2.clk.now.Add(59 * time.Minute)) {
		t.Errorf("a record 59 min ahead keeps its time: %v", skewed.Time)
	}
}

// A duplicate written by stage 1 after a crash sits at a new repartition offset; it must come out
// byte-identical, even after other messages changed the customer's session (START_CHAT, END_CHAT).
func TestStageOneDuplicatesAreByteIdentical(t *testing.T) {
	obs := &sessionCounts{untrusted: map[string]int{}}
	p := newPipe(t, 30*time.Minute, obs)
	base := p.clk.now.Add(-3 * time.Hour)
	intents := []string{"", "START_CHAT", "", "END_CHAT", "", "START_CONVERSATION", ""}
	var recs []stream.Record
	var firsts [][]byte
	for i, intent := range intents {
		extra := ""
		if intent != "" {
			extra = `,"intent":"` + intent + `"`
		}
		r := connectorRecord(int64(10+i), plain("cust", extra), base.Add(time.Duration(i)*time.Minute))
		recs = append(recs, r)
		firsts = append(firsts, p.ccm(p.repartition(r)).Value)
	}
	// Stage 1 crashed before committing the last three: it reads them again.
	for i := len(recs) - 3; i < len(recs); i++ {
		if dup := p.ccm(p.repartition(recs[i])).Value; !bytes.Equal(dup, firsts[i]) {
			t.Errorf("duplicate of record %d differs:\n first %s\n again %s", i, firsts[i], dup)
		}
	}
	if obs.replays != 3 || obs.forgotten != 0 {
		t.Errorf("replays %d (forgotten %d), want 3 remembered", obs.replays, obs.forgotten)
	}
}

// Hours-old traffic, one message a minute per customer, processed with housekeeping ticking on the
// wall clock: one conversation per customer, as live.
func TestBacklogDoesNotSplitConversations(t *testing.T) {
	p := newPipe(t, 5*time.Minute, nil)
	base := p.clk.now.Add(-6 * time.Hour)
	conv := map[string]string{}
	for i := range 60 {
		for c := range 5 {
			customer := fmt.Sprint("c", c)
			r := connectorRecord(int64(i*5+c), plain(customer, ""), base.Add(time.Duration(i)*time.Minute))
			got := decodeOut(t, p.ccm(p.repartition(r)).Value).Header.ConversationID
			if conv[customer] == "" {
				conv[customer] = got
			} else if got != conv[customer] {
				t.Fatalf("message %d of %s got a new conversation in a backlog", i, customer)
			}
		}
		p.clk.now = p.clk.now.Add(200 * time.Millisecond)
		p.e.Expire(p.clk.now)
	}
}

func TestNotificationsAreNotActivity(t *testing.T) {
	p := newPipe(t, time.Minute, nil)
	typing := `{"header":{"sender":{"id":"w","type":"CUSTOMER","senderName":"W"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"n"}},"body":{"type":"NOTIFICATION","notificationType":"TYPING_STARTED"}}`
	t0 := p.clk.now
	out := p.e.Process(p.repartition(connectorRecord(1, typing, t0))).Outputs
	if got := decodeOut(t, out[0].Value).Header; got.ConversationID != "" || got.ChannelSessionID != "" {
		t.Fatalf("TYPING_STARTED outside a session must pass without ids: %s", out[0].Value)
	}
	first := decodeOut(t, p.ccm(p.repartition(connectorRecord(2, plain("n", ""), t0))).Value).Header
	if got := decodeOut(t, p.ccm(p.repartition(connectorRecord(3, typing, t0.Add(50*time.Second)))).Value).Header; got.ConversationID != first.ConversationID {
		t.Fatalf("a notification in a session carries its ids: %+v", got)
	}
	// 70 s after the message, 20 s after the typing: the typing did not extend the session.
	if got := decodeOut(t, p.ccm(p.repartition(connectorRecord(4, plain("n", ""), t0.Add(70*time.Second)))).Value).Header; got.ConversationID == first.ConversationID {
		t.Fatal("a notification must not extend a session")
	}
}

func TestCorruptChangelogRecordIsSkipped(t *testing.T) {
	obs := &sessionCounts{untrusted: map[string]int{}}
	e := NewEnricher(testTopics, "sessions", 0, session.Fixed(time.Minute), obs, nil)
	good := session.Encode(&session.State{ChannelSessionID: "s", ConversationID: "c", Open: true, LastActivity: 5, Seq: 1})
	if err := e.Restore([]byte("k1"), []byte("not json")); err == nil {
		t.Fatal("a corrupt record must be reported")
	}
	if err := e.Restore([]byte("k2"), good); err != nil {
		t.Fatal(err)
	}
	if obs.corrupt != 1 || e.Sessions() != 1 {
		t.Fatalf("corrupt %d, sessions %d", obs.corrupt, e.Sessions())
	}
	e.Restored()
	if e.latest != 5 {
		t.Fatalf("partition time after restore = %d", e.latest)
	}
}

func TestSourceTimestampHeader(t *testing.T) {
	n := NewNormalizer(testTopics, 1<<20, nil)
	for _, ts := range []time.Time{{}, time.UnixMilli(1), time.UnixMilli(1732400000000)} {
		out := only(t, n.Process(connectorRecord(1, plain("x", ""), ts)))
		v, ok := (stream.Record{Headers: out.Headers}).Header(stream.HeaderSourceTimestamp)
		if !ok || string(v) != strconv.FormatInt(stream.Millis(ts), 10) {
			t.Errorf("%v: header %q", ts, v)
		}
	}
}

// The first record of an empty partition has no timestamp; the customer's next records are hours old
// and an idle timeout apart. The untimed record must not lend the wall clock to the session: the
// hours-old records are decided by their own times (two sessions), as they would be without it.
func TestUntimedFirstRecordDoesNotPinTheSession(t *testing.T) {
	p := newPipe(t, time.Minute, nil)
	old := p.clk.now.Add(-5 * time.Hour)
	untimed := decodeOut(t, p.ccm(p.repartition(connectorRecord(1, plain("u", ""), time.Time{}))).Value).Header
	a := decodeOut(t, p.ccm(p.repartition(connectorRecord(2, plain("u", ""), old))).Value).Header
	b := decodeOut(t, p.ccm(p.repartition(connectorRecord(3, plain("u", ""), old.Add(2*time.Minute)))).Value).Header
	if a.ConversationID != untimed.ConversationID {
		t.Errorf("the first timed record continues the session the untimed one opened: %s vs %s", a.ConversationID, untimed.ConversationID)
	}
	if b.ConversationID == a.ConversationID {
		t.Error("two hours-old records 2 min apart with a 1 min idle timeout must be two sessions")
	}
}

// With the inbound limit raised to 2 MiB, a 1.5 MiB message that stage 1 accepts must be enriched by
// stage 2 too, not dead-lettered there against the library's default 1 MiB.
func TestSessionsStageTakesTheConfiguredLimit(t *testing.T) {
	const limit = 2 << 20
	n := NewNormalizer(testTopics, limit, nil)
	e := NewEnricher(testTopics, "sessions", 0, session.Fixed(time.Minute), nil, nil).WithMaxBytes(limit + 64<<10)
	big := plain("big", "")
	big = big[:len(big)-2] + `,"x":"` + string(bytes.Repeat([]byte("a"), 1536<<10)) + `"}}`
	out := only(t, n.Process(connectorRecord(1, big, time.Now())))
	if out.Topic != testTopics.Repartition {
		t.Fatalf("stage 1 sent the 1.5 MiB message to %s", out.Topic)
	}
	res := e.Process(stream.Record{Topic: "rep", Offset: 1, Key: out.Key, Value: out.Value, Headers: out.Headers, Time: out.Time})
	if res.Reject != nil || len(res.Outputs) == 0 || res.Outputs[0].Topic != testTopics.CCM {
		t.Fatalf("stage 2 must enrich it: %+v", res.Reject)
	}
}

type watermarkAges struct {
	nopSessions
	ages map[int]time.Duration
}

func (w *watermarkAges) WatermarkAge(p int, age time.Duration) { w.ages[p] = age }

// The watermark's age is reported per partition while it is known, and withdrawn when the partition goes.
func TestWatermarkAgeIsReported(t *testing.T) {
	obs := &watermarkAges{ages: map[int]time.Duration{}}
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	mark := int64(0)
	e := NewEnricher(testTopics, "sessions", 3, session.Fixed(time.Minute), obs, fixedClock(now)).
		WithUpstream(func() int64 { return mark })
	e.Expire(now)
	if _, ok := obs.ages[3]; ok {
		t.Fatalf("no age before a watermark is known: %v", obs.ages)
	}
	mark = now.Add(-5 * time.Second).UnixMilli()
	e.Expire(now)
	if obs.ages[3] != 5*time.Second {
		t.Fatalf("age %v, want 5s", obs.ages[3])
	}
	e.Close()
	if obs.ages[3] >= 0 {
		t.Fatalf("closing the partition must withdraw its age: %v", obs.ages[3])
	}
}
