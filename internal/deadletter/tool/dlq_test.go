package tool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkatest/fakekafka"
	"github.com/cimstream/cimstream/internal/session"
	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/internal/stream/deadletter"
	"github.com/cimstream/cimstream/pkg/cim"
)

const (
	dlqTopic = "cimstream.dlq"
	web      = "cim.inbound.web"
	sms      = "cim.inbound.sms"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func valid(customer, text string) string {
	return `{"id":"` + text + `","header":{"sender":{"id":"web-1","type":"CONNECTOR","senderName":"WEB"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"` +
		customer + `"}},"body":{"type":"PLAIN","markdownText":"` + text + `"}}`
}

// source is a record as a connector produced it.
func source(topic string, offset int64, key, value string, at time.Time, headers ...stream.Header) stream.Record {
	return stream.Record{Topic: topic, Partition: 0, Offset: offset, Key: []byte(key), Value: []byte(value), Time: at, Headers: headers}
}

// dead is the dead letter the pipeline writes for rec, to partition 0 of the dead-letter topic.
func dead(rec stream.Record, pipeline string, codes ...string) stream.Output {
	var vs cim.Violations
	for _, c := range codes {
		vs = append(vs, cim.Violation{Path: "header", Code: c, Message: "broken"})
	}
	// Dead-lettered as the record arrived: the dead letter's time is the original's.
	o := deadletter.Builder{Topic: dlqTopic, Pipeline: pipeline, MaxValueBytes: 1024, Now: func() time.Time { return rec.Time }}.Build(rec, vs)
	o.Partition = 0
	return o
}

// testReplay guards after one replay, so the fixture's guarded record needs one replayed predecessor.
func testReplay(filter Filter) Replay {
	return Replay{Topic: dlqTopic, Filter: filter, Validate: Validator(config.Default()), Now: func() time.Time { return t0 }, MaxReplays: 1}
}

func header(hs []stream.Header, key string) (string, bool) {
	for _, h := range hs {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

func TestParseSplitsOriginalFromDeadLetterHeaders(t *testing.T) {
	rec := source(web, 7, "ann", valid("ann", "m1"), t0,
		stream.Header{Key: "trace", Value: []byte("abc")}, stream.Header{Key: HeaderReplayCount, Value: []byte("2")},
		stream.Header{Key: stream.RenamedPrefix + HeaderReplayOf, Value: []byte("cimstream.dlq/0/3")})
	b := newMem(map[string]int{dlqTopic: 1})
	add(b, dead(rec, "inbound", "required", "type"))
	l, ok := Parse(b.Records(dlqTopic)[0])
	if !ok {
		t.Fatal("a dead letter was not recognised")
	}
	if len(l.Original) != 3 || l.Original[0].Key != "trace" || l.Original[1].Key != HeaderReplayCount {
		t.Errorf("original headers %v, want trace and the replay headers only", l.Original)
	}
	if strings.Join(l.Codes, ",") != "required,type" || l.Pipeline != "inbound" || l.Detail == "" {
		t.Errorf("codes %v pipeline %q detail %q", l.Codes, l.Pipeline, l.Detail)
	}
	if l.SourceTopic != web || l.SourcePartition != 0 || l.SourceOffset != 7 || l.MessageID != "m1" {
		t.Errorf("source %s/%d/%d id %q", l.SourceTopic, l.SourcePartition, l.SourceOffset, l.MessageID)
	}
	// The replay count a record carries is not taken: the ledger counts replays from markers.
	if l.ReplayCount != 0 || l.ReplayOf != "cimstream.dlq/0/3" {
		t.Errorf("replay count %d (want 0, not the header's) replay of %q", l.ReplayCount, l.ReplayOf)
	}
	if l.Truncated != "" {
		t.Errorf("truncated %q for a small value", l.Truncated)
	}
	if _, ok := Parse(stream.Record{Headers: []stream.Header{{Key: HeaderMarker, Value: []byte("done")}}}); ok {
		t.Error("a replay marker parsed as a dead letter")
	}
	// A dead letter whose original carried a marker header (before entries renamed it) is a dead letter.
	if _, ok := Parse(stream.Record{Headers: []stream.Header{{Key: HeaderMarker, Value: []byte("done")}, {Key: deadletter.HeaderCodes}}}); !ok {
		t.Error("a dead letter with a marker header among its original headers was hidden")
	}
	if _, ok := Parse(stream.Record{Value: []byte("x")}); ok {
		t.Error("a record without dead-letter headers parsed as a dead letter")
	}
}

func TestParseTruncatedDeadLetter(t *testing.T) {
	big := `{"body":"` + strings.Repeat("x", 2000) + `"}`
	b := newMem(map[string]int{dlqTopic: 1})
	add(b, dead(source(web, 1, "k", big, t0), "inbound", "too_large"))
	l, _ := Parse(b.Records(dlqTopic)[0])
	if l.Truncated != "value" || l.OriginalSize != len(big) || len(l.Record.Value) != 1024 {
		t.Errorf("truncated %q size %d kept %d", l.Truncated, l.OriginalSize, len(l.Record.Value))
	}
}

func TestFilterMatch(t *testing.T) {
	l := Letter{Codes: []string{"required", "type"}, SourceTopic: web, Pipeline: "inbound", MessageID: "m1",
		Record: stream.Record{Time: t0}}
	cases := []struct {
		f    Filter
		want bool
	}{
		{Filter{}, true},
		{Filter{Codes: []string{"type"}}, true},
		{Filter{Codes: []string{"malformed"}}, false},
		{Filter{SourceTopics: []string{sms, web}}, true},
		{Filter{SourceTopics: []string{sms}}, false},
		{Filter{Pipelines: []string{"outbound"}}, false},
		{Filter{IDs: []string{"m1"}}, true},
		{Filter{IDs: []string{"m2"}}, false},
		{Filter{Since: t0}, true},
		{Filter{Since: t0.Add(time.Millisecond)}, false},
		{Filter{Until: t0}, false},
		{Filter{Until: t0.Add(time.Millisecond)}, true},
		{Filter{Codes: []string{"type"}, SourceTopics: []string{sms}}, false},
	}
	for i, c := range cases {
		if got := c.f.Match(l); got != c.want {
			t.Errorf("case %d %+v: match %v, want %v", i, c.f, got, c.want)
		}
	}
	if (Filter{IDs: []string{""}}).Match(Letter{}) {
		t.Error("an id filter matched a dead letter without an id")
	}
}

// newMem is a broker holding topics (name: partitions).
func newMem(topics map[string]int) *fakekafka.Broker {
	b := fakekafka.New()
	for name, n := range topics {
		b.CreateTopic(name, n)
	}
	return b
}

// add writes records as a producer does.
func add(b *fakekafka.Broker, outs ...stream.Output) {
	for _, err := range b.Write(context.Background(), outs) {
		if err != nil {
			panic(err)
		}
	}
}

// hookBroker is a broker whose Ranges may fail, which counts the records Read passed on by topic
// (when read is set), and writes what after returns right after each record written (another client's).
type hookBroker struct {
	*fakekafka.Broker
	ranges func(topic string) error
	read   map[string]int
	after  func(o stream.Output) []stream.Output
}

func (h *hookBroker) Ranges(ctx context.Context, topic string) ([]Range, error) {
	if h.ranges != nil {
		if err := h.ranges(topic); err != nil {
			return nil, err
		}
	}
	return h.Broker.Ranges(ctx, topic)
}

func (h *hookBroker) Read(ctx context.Context, topic string, partition int, from, end int64, fn func(stream.Record) error) error {
	return h.Broker.Read(ctx, topic, partition, from, end, func(r stream.Record) error {
		if h.read != nil {
			h.read[topic]++
		}
		return fn(r)
	})
}

func (h *hookBroker) Write(ctx context.Context, outs []stream.Output) []error {
	errs := make([]error, len(outs))
	for i, o := range outs {
		errs[i] = h.Broker.Write(ctx, []stream.Output{o})[0]
		if errs[i] == nil && h.after != nil {
			if extra := h.after(o); extra != nil {
				h.after = nil
				add(h.Broker, extra...)
			}
		}
	}
	return errs
}

// replaysOf counts a target topic's records by the dead letter they replay (cimstream.replay.of).
func replaysOf(b *fakekafka.Broker, topic string) map[string]int {
	seen := map[string]int{}
	for _, r := range b.Records(topic) {
		of, _ := header(r.Headers, HeaderReplayOf)
		seen[of]++
	}
	return seen
}

// fixture is a dead-letter topic with one dead letter of each kind, all in partition 0, and in partition
// 1 the earlier dead letter of the guarded one's record with the done marker of its replay.
type fixture struct {
	b                                          *fakekafka.Broker
	fixed, stillBad, truncated, guarded, other stream.Record
}

func newFixture() fixture {
	f := fixture{b: newMem(map[string]int{dlqTopic: 2, web: 3, sms: 1, "ccm.outbound": 1})}
	f.fixed = source(web, 1, "ann", valid("ann", "fixed"), t0.Add(-2*time.Hour), stream.Header{Key: "trace", Value: []byte("t1")})
	f.stillBad = source(web, 2, "bob", "this is not json", t0.Add(-30*time.Minute))
	f.truncated = source(web, 3, "cy", `{"x":"`+strings.Repeat("y", 3000)+`"}`, t0.Add(-10*time.Minute))
	first := source(web, 4, "dan", valid("dan", "guarded"), t0.Add(-8*24*time.Hour))
	earlier := dead(first, "inbound", "required")
	earlier.Partition = 1
	add(f.b, earlier, markerOutput(dlqTopic, 1, "done", doneMarker{Intent: "i0", Offsets: []int64{0}}, t0.Add(-7*24*time.Hour)))
	// The replay of that dead letter failed again: the same record at a later offset, naming it.
	f.guarded = source(web, 104, "dan", valid("dan", "guarded"), first.Time,
		stream.Header{Key: stream.RenamedPrefix + HeaderReplayCount, Value: []byte("1")},
		stream.Header{Key: stream.RenamedPrefix + HeaderReplayOf, Value: []byte(Ref(dlqTopic, 1, 0))},
		stream.Header{Key: stream.RenamedPrefix + HeaderReplayIntent, Value: []byte("i0")})
	f.other = source(sms, 1, "eve", valid("eve", "sms"), t0.Add(-3*24*time.Hour))
	add(f.b, dead(f.fixed, "inbound", "delivery_failed"), dead(f.stillBad, "inbound", "malformed"), dead(f.truncated, "inbound", "too_large"),
		dead(f.guarded, "inbound", "required"), dead(f.other, "inbound", "required"))
	return f
}

func TestInspectCountsByCodeSourcePipelineAndAge(t *testing.T) {
	f := newFixture()
	var listed []string
	s, err := Inspect{Topic: dlqTopic, Now: t0, OnLetter: func(l Letter, _ bool) error {
		listed = append(listed, l.MessageID)
		return nil
	}}.Run(context.Background(), f.b)
	if err != nil {
		t.Fatal(err)
	}
	if s.Letters != 6 || s.Selected != 6 || s.Replayed != 1 {
		t.Errorf("letters %d selected %d replayed %d", s.Letters, s.Selected, s.Replayed)
	}
	if s.ByCode["required"] != 3 || s.ByCode["malformed"] != 1 || s.ByCode["too_large"] != 1 || s.ByCode["delivery_failed"] != 1 {
		t.Errorf("by code %v", s.ByCode)
	}
	if s.BySource[web] != 5 || s.BySource[sms] != 1 || s.ByPipeline["inbound"] != 6 {
		t.Errorf("by source %v by pipeline %v", s.BySource, s.ByPipeline)
	}
	want := []AgeCount{{"<1h", 2}, {"1h-1d", 1}, {"1d-7d", 1}, {">=7d", 2}}
	if fmt.Sprint(s.ByAge) != fmt.Sprint(want) {
		t.Errorf("by age %v, want %v", s.ByAge, want)
	}
	if len(listed) != 6 {
		t.Errorf("listed %v", listed)
	}

	s, err = Inspect{Topic: dlqTopic, Now: t0, Filter: Filter{Codes: []string{"required"}, SourceTopics: []string{web}}}.Run(context.Background(), f.b)
	if err != nil || s.Selected != 2 || s.Letters != 6 || s.ByCode["required"] != 2 || len(s.ByCode) != 1 {
		t.Errorf("filtered: %+v %v", s, err)
	}
}

func TestReplayAccountsForEveryDeadLetterAndStripsErrorHeaders(t *testing.T) {
	f := newFixture()
	var decisions []Decision
	r := testReplay(Filter{SourceTopics: []string{web}})
	r.OnDecision = func(d Decision) { decisions = append(decisions, d) }
	acct, err := r.Run(context.Background(), f.b)
	if err != nil {
		t.Fatal(err)
	}
	want := Account{Read: 6, Replayed: 1, StillInvalid: 1, Guarded: 1, AlreadyReplayed: 1, Unreplayable: 1, Filtered: 1, Other: 1}
	if acct != want || !acct.Exact() {
		t.Errorf("account %+v, want %+v", acct, want)
	}
	if len(decisions) != 5 {
		t.Errorf("%d decisions, want one per selected dead letter (5)", len(decisions))
	}
	out := f.b.Records(web)
	if len(out) != 1 {
		t.Fatalf("%d records replayed to %s, want 1", len(out), web)
	}
	got := out[0]
	if string(got.Key) != "ann" || string(got.Value) != string(f.fixed.Value) || !got.Time.Equal(f.fixed.Time) {
		t.Errorf("replayed key %q value %q time %v: want the original", got.Key, got.Value, got.Time)
	}
	var keys []string
	for _, h := range got.Headers {
		keys = append(keys, h.Key)
	}
	if strings.Join(keys, ",") != "trace,"+HeaderReplayCount+","+HeaderReplayOf+","+HeaderReplayIntent {
		t.Errorf("replayed headers %v, want the original ones plus the replay count, origin and batch", keys)
	}
	if c, _ := header(got.Headers, HeaderReplayCount); c != "1" {
		t.Errorf("replay count %q, want 1", c)
	}
	if of, _ := header(got.Headers, HeaderReplayOf); of != Ref(dlqTopic, 0, 0) {
		t.Errorf("replay of %q", of)
	}
	if n := len(f.b.Records(sms)); n != 0 {
		t.Errorf("the filtered dead letter was replayed (%d records in %s)", n, sms)
	}
}

func TestReplaySecondRunReplaysNothingTwice(t *testing.T) {
	f := newFixture()
	if _, err := testReplay(Filter{}).Run(context.Background(), f.b); err != nil {
		t.Fatal(err)
	}
	web1, sms1 := len(f.b.Records(web)), len(f.b.Records(sms))
	if web1 != 1 || sms1 != 1 {
		t.Fatalf("first run replayed %d to web and %d to sms, want 1 and 1", web1, sms1)
	}
	// A second run, and a run with another selection overlapping the first, replay nothing again.
	for _, filter := range []Filter{{}, {Codes: []string{"required"}}} {
		acct, err := testReplay(filter).Run(context.Background(), f.b)
		if err != nil {
			t.Fatal(err)
		}
		if acct.Replayed != 0 || !acct.Exact() {
			t.Errorf("filter %+v: account %+v, want nothing replayed", filter, acct)
		}
	}
	acct, _ := testReplay(Filter{}).Run(context.Background(), f.b)
	if acct.AlreadyReplayed != 3 || acct.Other != 3 {
		t.Errorf("account %+v: want 3 already replayed and 3 markers (the earlier done, the one batch's intent and done)", acct)
	}
	if len(f.b.Records(web)) != web1 || len(f.b.Records(sms)) != sms1 {
		t.Error("a later run replayed a dead letter again")
	}
	s, _ := Inspect{Topic: dlqTopic, Now: t0}.Run(context.Background(), f.b)
	if s.Replayed != 3 || s.Letters != 6 {
		t.Errorf("inspect after replay: %+v", s)
	}
}

func TestReplayDryRunWritesNothing(t *testing.T) {
	f := newFixture()
	var would []string
	r := testReplay(Filter{})
	r.DryRun = true
	r.OnDecision = func(d Decision) {
		if d.Outcome == WouldReplay {
			would = append(would, d.Letter.MessageID)
		}
	}
	before := len(f.b.Records(dlqTopic))
	acct, err := r.Run(context.Background(), f.b)
	if err != nil {
		t.Fatal(err)
	}
	if acct.Replayed != 2 || strings.Join(would, ",") != "fixed,sms" {
		t.Errorf("dry run account %+v would replay %v", acct, would)
	}
	if len(f.b.Records(web))+len(f.b.Records(sms)) != 0 || len(f.b.Records(dlqTopic)) != before {
		t.Error("a dry run wrote records")
	}
	acct, _ = testReplay(Filter{}).Run(context.Background(), f.b)
	if acct.Replayed != 2 {
		t.Errorf("after a dry run the real run replayed %d, want 2", acct.Replayed)
	}
}

func TestReplayToAnotherTopic(t *testing.T) {
	f := newFixture()
	r := testReplay(Filter{IDs: []string{"sms"}})
	r.To = web
	acct, err := r.Run(context.Background(), f.b)
	if err != nil || acct.Replayed != 1 {
		t.Fatalf("account %+v %v", acct, err)
	}
	if len(f.b.Records(sms)) != 0 || len(f.b.Records(web)) != 1 {
		t.Error("--to was not honoured")
	}
}

func TestReplayLoopGuardStopsARecordThatKeepsFailing(t *testing.T) {
	b := newMem(map[string]int{dlqTopic: 1, web: 1})
	// The original at an offset the replays do not reach in the in-memory topic: each dead letter is of a
	// different record (the original, then each replay), as in Kafka.
	add(b, dead(source(web, 100, "k", valid("k", "loop"), t0), "inbound", "delivery_failed"))
	r := testReplay(Filter{})
	r.MaxReplays = 2
	for round := 1; round <= 3; round++ {
		acct, err := r.Run(context.Background(), b)
		if err != nil {
			t.Fatal(err)
		}
		wantReplayed := 1
		if round == 3 {
			wantReplayed = 0
		}
		if acct.Replayed != wantReplayed {
			t.Fatalf("round %d: account %+v, want %d replayed", round, acct, wantReplayed)
		}
		if round == 3 {
			if acct.Guarded != 1 {
				t.Errorf("round 3: account %+v, want the record guarded", acct)
			}
			break
		}
		// The pipeline fails the replayed record again: a new dead letter of it.
		recs := b.Records(web)
		again := recs[len(recs)-1]
		if c, _ := header(again.Headers, HeaderReplayCount); c != fmt.Sprint(round) {
			t.Fatalf("round %d: replay count %q", round, c)
		}
		add(b, dead(again, "inbound", "delivery_failed"))
	}
	if n := len(b.Records(web)); n != 2 {
		t.Errorf("%d replays, want 2 (the guard's limit)", n)
	}
}

func TestReplayInterruptedAfterWritingIsRecoveredWithoutDuplicates(t *testing.T) {
	f := newFixture()
	crash := errors.New("crashed")
	// The process dies after the replayed records were acknowledged, before the done marker.
	f.b.Fail = func(_ int, o stream.Output) error {
		if kind, ok := header(o.Headers, HeaderMarker); ok && kind == "done" {
			return crash
		}
		return nil
	}
	acct, err := testReplay(Filter{}).Run(context.Background(), f.b)
	if !errors.Is(err, ErrPartial) || !errors.Is(err, crash) {
		t.Fatalf("err %v, want a partial replay", err)
	}
	if acct.Unfinished != 2 || !acct.Exact() {
		t.Errorf("account %+v: want the batch unfinished and the account still exact", acct)
	}
	if len(f.b.Records(web)) != 1 || len(f.b.Records(sms)) != 1 {
		t.Fatalf("the interrupted run wrote %d and %d", len(f.b.Records(web)), len(f.b.Records(sms)))
	}
	f.b.Fail = nil
	// Right after, the unfinished batch may belong to a run still writing: refused.
	if _, err := testReplay(Filter{}).Run(context.Background(), f.b); !errors.Is(err, ErrBusy) {
		t.Fatalf("a run right after the interrupted one: %v, want ErrBusy", err)
	}
	if len(f.b.Records(web)) != 1 || len(f.b.Records(sms)) != 1 {
		t.Fatal("a refused run wrote records")
	}
	later := testReplay(Filter{})
	later.Now = func() time.Time { return t0.Add(DefaultActiveWindow) }
	acct, err = later.Run(context.Background(), f.b)
	if err != nil {
		t.Fatal(err)
	}
	if acct.Recovered != 2 || acct.AlreadyReplayed != 3 || acct.Replayed != 0 {
		t.Errorf("account %+v: want both found as already replayed", acct)
	}
	if len(f.b.Records(web)) != 1 || len(f.b.Records(sms)) != 1 {
		t.Error("recovery replayed a dead letter twice")
	}
}

func TestReplayFailedMidBatchReplaysOnlyTheRest(t *testing.T) {
	b := newMem(map[string]int{dlqTopic: 1, web: 1})
	for i := range 5 {
		add(b, dead(source(web, int64(i), "k", valid("k", fmt.Sprint("m", i)), t0), "inbound", "delivery_failed"))
	}
	writes := 0
	b.Fail = func(_ int, o stream.Output) error {
		if o.Topic == web {
			writes++
			if writes == 3 {
				return errors.New("broker gone")
			}
		}
		return nil
	}
	if _, err := testReplay(Filter{}).Run(context.Background(), b); !errors.Is(err, ErrPartial) {
		t.Fatalf("err %v", err)
	}
	if n := len(b.Records(web)); n != 2 {
		t.Fatalf("%d written before the failure, want 2", n)
	}
	b.Fail = nil
	later := testReplay(Filter{})
	later.Now = func() time.Time { return t0.Add(DefaultActiveWindow + time.Minute) }
	acct, err := later.Run(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if acct.Recovered != 2 || acct.Replayed != 3 || acct.AlreadyReplayed != 2 {
		t.Errorf("account %+v", acct)
	}
	seen := map[string]int{}
	for _, r := range b.Records(web) {
		of, _ := header(r.Headers, HeaderReplayOf)
		seen[of]++
	}
	if len(seen) != 5 {
		t.Errorf("replayed %d distinct dead letters, want 5: %v", len(seen), seen)
	}
	for of, n := range seen {
		if n != 1 {
			t.Errorf("%s replayed %d times", of, n)
		}
	}
}

func TestValidatorUsesThePipelinesRules(t *testing.T) {
	cfg := config.Default()
	v := Validator(cfg)
	in := Letter{Pipeline: "inbound", SourceTopic: web, Record: stream.Record{Value: []byte(valid("a", "x"))}}
	if vs := v(in, web); len(vs) != 0 {
		t.Errorf("valid inbound message: %v", vs)
	}
	in.Record.Value = []byte(`{"header":{},"body":{"type":"PLAIN","markdownText":"x"}}`)
	if vs := v(in, web); len(vs) == 0 || vs[0].Code != cim.CodeRequired {
		t.Errorf("invalid inbound message: %v", vs)
	}
	outMsg := `{"id":"o1","header":{"sender":{"id":"a","type":"AGENT","senderName":"A"},"channelData":{"serviceIdentifier":"nowhere","channelCustomerIdentifier":"c"},"channelSessionId":"s","conversationId":"c1","customer":{"id":"x"}},"body":{"type":"PLAIN","markdownText":"hi"}}`
	out := Letter{Pipeline: "outbound", SourceTopic: cfg.Topics.CCMOutbound, Record: stream.Record{Value: []byte(outMsg)}}
	if vs := v(out, cfg.Topics.CCMOutbound); len(vs) != 1 || vs[0].Code != "no_route" {
		t.Errorf("outbound message without a route: %v, want no_route", vs)
	}
	cfg.Outbound.Channels = map[string]string{"nowhere": "web"}
	if vs := Validator(cfg)(out, cfg.Topics.CCMOutbound); len(vs) != 0 {
		t.Errorf("outbound message once its channel is configured: %v", vs)
	}
	if vs := v(out, web); len(vs) != 0 {
		t.Errorf("an outbound message is valid inbound too: %v", vs)
	}
	// A webhook dead letter back to its connector topic: outbound rules, no route needed.
	eg := Letter{Pipeline: "egress", SourceTopic: "cim.outbound.web", Record: stream.Record{Value: []byte(outMsg)}}
	if vs := Validator(config.Default())(eg, "cim.outbound.web"); len(vs) != 0 {
		t.Errorf("egress dead letter to its connector topic: %v, want valid without a route", vs)
	}
	eg.Record.Value = []byte(strings.Replace(outMsg, `"channelSessionId":"s",`, "", 1))
	if vs := v(eg, "cim.outbound.web"); len(vs) != 1 || vs[0].Path != "header.channelSessionId" {
		t.Errorf("egress dead letter without channelSessionId: %v, want the outbound rule's violation", vs)
	}
}

func TestReplayToAMissingTopicIsUnreplayableAndTheRestGoesOn(t *testing.T) {
	b := newMem(map[string]int{dlqTopic: 1, web: 1})
	add(b, dead(source("cim.inbound.gone", 0, "k", valid("k", "gone"), t0), "inbound", "delivery_failed"),
		dead(source(web, 0, "k", valid("k", "here"), t0), "inbound", "delivery_failed"))
	var reasons []string
	r := testReplay(Filter{})
	r.OnDecision = func(d Decision) {
		if d.Outcome == Unreplayable {
			reasons = append(reasons, d.Reason)
		}
	}
	acct, err := r.Run(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if acct.Unreplayable != 1 || acct.Replayed != 1 || len(b.Records(web)) != 1 {
		t.Errorf("account %+v, %d in %s", acct, len(b.Records(web)), web)
	}
	if len(reasons) != 1 || !strings.Contains(reasons[0], "cim.inbound.gone does not exist") {
		t.Errorf("reasons %q", reasons)
	}
}

func TestLetterJSONKeepsBytesThatAreNotText(t *testing.T) {
	b := newMem(map[string]int{dlqTopic: 1})
	rec := source(web, 3, "", "", t0, stream.Header{Key: "bin", Value: []byte{0xff, 0x00}})
	rec.Key, rec.Value = nil, []byte{0xfe, 'x'}
	add(b, dead(rec, "inbound", "malformed"))
	l, _ := Parse(b.Records(dlqTopic)[0])
	replayed := true
	j := l.JSON(&replayed)
	if j.Key != nil || j.Value != nil || j.ValueBase64 != "/ng=" || len(j.Headers) != 1 || j.Headers[0].ValueBase64 != "/wA=" {
		t.Errorf("json %+v", j)
	}
	if j.Source.Topic != web || j.Source.Offset != 3 || *j.Replayed != true || j.Timestamp != "2026-05-01T12:00:00Z" || j.Codes[0] != "malformed" {
		t.Errorf("json %+v", j)
	}
}

func TestReplayStopsWhenAnotherRunWritesToThePartition(t *testing.T) {
	f := newFixture()
	// Another run writes its intent right after this run's, before this run produces.
	h := &hookBroker{Broker: f.b, after: func(o stream.Output) []stream.Output {
		if kind, _ := header(o.Headers, HeaderMarker); kind == "intent" {
			return []stream.Output{markerOutput(dlqTopic, 0, "intent", intentMarker{ID: "other", Offsets: []int64{0}}, t0)}
		}
		return nil
	}}
	_, err := testReplay(Filter{}).Run(context.Background(), h)
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("err %v, want ErrBusy", err)
	}
	if n := len(f.b.Records(web)) + len(f.b.Records(sms)); n != 0 {
		t.Errorf("%d records replayed although another run was writing", n)
	}
}

func TestMissingDeadLetterTopicSaysWhatToDo(t *testing.T) {
	b := newMem(map[string]int{web: 1})
	_, err := testReplay(Filter{}).Run(context.Background(), b)
	if !errors.Is(err, ErrNoTopic) || !strings.Contains(err.Error(), "topics.deadLetter") {
		t.Errorf("replay: %v", err)
	}
	_, err = Inspect{Topic: dlqTopic}.Run(context.Background(), b)
	if !errors.Is(err, ErrNoTopic) || !strings.Contains(err.Error(), "--topic") {
		t.Errorf("inspect: %v", err)
	}
}

func TestReplayStoppedByAMetadataErrorWritesNothingAndCountsOnlyDecided(t *testing.T) {
	b := newMem(map[string]int{dlqTopic: 1, web: 1, sms: 1})
	add(b, dead(source(web, 0, "k", valid("k", "one"), t0), "inbound", "delivery_failed"),
		dead(source(sms, 0, "k", "not json", t0), "inbound", "malformed"),
		dead(source(sms, 1, "k", valid("k", "two"), t0), "inbound", "delivery_failed"))
	down := errors.New("metadata unavailable")
	h := &hookBroker{Broker: b, ranges: func(topic string) error {
		if topic == sms {
			return down
		}
		return nil
	}}
	acct, err := testReplay(Filter{}).Run(context.Background(), h)
	if !errors.Is(err, down) {
		t.Fatalf("err %v", err)
	}
	if acct.Read != 1 || acct.StillInvalid != 1 || !acct.Exact() || len(b.Records(web)) != 0 {
		t.Errorf("account %+v, %d written: want only the decided invalid one counted and nothing written", acct, len(b.Records(web)))
	}
	acct, err = testReplay(Filter{}).Run(context.Background(), b)
	if err != nil || acct.Replayed != 2 || len(b.Records(web)) != 1 || len(b.Records(sms)) != 1 {
		t.Errorf("the next run: %+v %v", acct, err)
	}
}

// An interrupted run's batch whose --to topic was deleted since: recovery finds nothing there (what
// the batch wrote went with the topic), its dead letters become replayable again, and later runs go on.
func TestReplayRecoversABatchWhoseTargetWasDeleted(t *testing.T) {
	b := newMem(map[string]int{dlqTopic: 1, web: 1, "scratch": 1})
	add(b, dead(source(web, 100, "k", valid("k", "a"), t0), "inbound", "delivery_failed"),
		dead(source(web, 101, "k", valid("k", "b"), t0), "inbound", "delivery_failed"))
	b.Fail = func(_ int, o stream.Output) error {
		if kind, _ := header(o.Headers, HeaderMarker); kind == "done" {
			return errors.New("crash")
		}
		return nil
	}
	r := testReplay(Filter{IDs: []string{"a"}})
	r.To = "scratch"
	if _, err := r.Run(context.Background(), b); !errors.Is(err, ErrPartial) {
		t.Fatalf("interrupted run: %v", err)
	}
	b.Fail = nil
	b.DeleteTopic("scratch")
	later := testReplay(Filter{IDs: []string{"b"}})
	later.Now = func() time.Time { return t0.Add(time.Hour) }
	acct, err := later.Run(context.Background(), b)
	if err != nil || acct.Replayed != 1 || acct.Recovered != 0 || !acct.Exact() {
		t.Fatalf("a later run: %s recovered %d %v, want b replayed", acct, acct.Recovered, err)
	}
	// a was replayed only into the deleted topic: it is replayable again.
	acct, err = testReplay(Filter{IDs: []string{"a"}}).Run(context.Background(), b)
	if err != nil || acct.Replayed != 1 || !acct.Exact() {
		t.Errorf("a again: %s %v, want it replayed", acct, err)
	}
	if got := replaysOf(b, web); len(got) != 2 {
		t.Errorf("replays to %s: %v", web, got)
	}
}

// A record the target refuses for good (stage.Final: too large for the topic, a timestamp outside its
// window, a policy) is unreplayable with the reason; the rest of its batch and the later batches are
// replayed, and later runs are not stopped by it.
func TestReplayRecordRefusedByTheTargetIsUnreplayableAndTheRestReplayed(t *testing.T) {
	for _, batch := range []int{1, 100} {
		t.Run(fmt.Sprint("batch ", batch), func(t *testing.T) {
			b := newMem(map[string]int{dlqTopic: 1, web: 1})
			for i := range 4 {
				add(b, dead(source(web, int64(100+i), "k", valid("k", fmt.Sprint("m", i)), t0), "inbound", "delivery_failed"))
			}
			b.Fail = func(_ int, o stream.Output) error {
				if o.Topic == web && string(o.Value) == valid("k", "m1") {
					return fmt.Errorf("produce: INVALID_TIMESTAMP: %w", stage.ErrRefused)
				}
				return nil
			}
			for run := range 3 {
				var reason string
				r := testReplay(Filter{})
				r.BatchSize = batch
				r.Now = func() time.Time { return t0.Add(time.Duration(run) * time.Hour) }
				r.OnDecision = func(d Decision) {
					if d.Outcome == Unreplayable {
						reason = d.Reason
					}
				}
				acct, err := r.Run(context.Background(), b)
				if err != nil {
					t.Fatalf("run %d: %v", run, err)
				}
				if acct.Read != 4 || acct.Unreplayable != 1 || acct.Replayed+acct.AlreadyReplayed != 3 || !acct.Exact() {
					t.Errorf("run %d: %s, want 1 unreplayable and the other 3 replayed", run, acct)
				}
				if !strings.Contains(reason, "refused") || !strings.Contains(reason, "INVALID_TIMESTAMP") {
					t.Errorf("run %d: reason %q", run, reason)
				}
			}
			if got := replaysOf(b, web); len(got) != 3 || got[Ref(dlqTopic, 0, 1)] != 0 {
				t.Errorf("replays %v, want the 3 the target takes, once each", got)
			}
		})
	}
}

// The pipelines are at-least-once: after a crash the same original record can be dead-lettered twice,
// byte-identical, even into another partition of the dead-letter topic. The copies are one original:
// replayed once, in the run that meets both and in later runs, with an exact account.
func TestReplayCopiesOfOneDeadLetterReplayOnce(t *testing.T) {
	b := newMem(map[string]int{dlqTopic: 2, web: 1})
	rec := source(web, 7, "k", valid("k", "dup"), t0)
	other := dead(rec, "inbound", "delivery_failed")
	other.Partition = 1
	add(b, dead(rec, "inbound", "delivery_failed"), dead(rec, "inbound", "delivery_failed"), other,
		dead(source(web, 8, "k", valid("k", "single"), t0), "inbound", "delivery_failed"))
	var reasons []string
	r := testReplay(Filter{})
	r.OnDecision = func(d Decision) {
		if d.Outcome == AlreadyReplayed {
			reasons = append(reasons, d.Reason)
		}
	}
	acct, err := r.Run(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if acct.Read != 4 || acct.Replayed != 2 || acct.AlreadyReplayed != 2 || !acct.Exact() {
		t.Errorf("first run: %s, want 2 replayed (dup once, single) and 2 copies already replayed", acct)
	}
	if len(reasons) != 2 || !strings.Contains(reasons[0], "copy") {
		t.Errorf("reasons for the copies: %q", reasons)
	}
	if n := len(b.Records(web)); n != 2 {
		t.Fatalf("%d records replayed to %s, want 2: the copies are one original", n, web)
	}
	// A later run, and a copy written after the first run: nothing is replayed again.
	add(b, dead(rec, "inbound", "delivery_failed"))
	acct, err = testReplay(Filter{}).Run(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if acct.Read != 5 || acct.AlreadyReplayed != 5 || acct.Replayed != 0 || !acct.Exact() {
		t.Errorf("second run: %s, want all 5 already replayed", acct)
	}
	if n := len(b.Records(web)); n != 2 {
		t.Errorf("%d records in %s after the second run, want 2", n, web)
	}
	s, err := Inspect{Topic: dlqTopic, Now: t0}.Run(context.Background(), b)
	if err != nil || s.Letters != 5 || s.Replayed != 5 {
		t.Errorf("inspect: %+v %v, want the 5 dead letters counted replayed", s, err)
	}
}

// The same record of another pipeline, or another offset, is another original.
func TestLetterOriginNamesTheOriginalRecord(t *testing.T) {
	l := Letter{Pipeline: "inbound", SourceTopic: web, SourcePartition: 2, SourceOffset: 7, Record: stream.Record{Partition: 1, Offset: 40}}
	same := l
	same.Record.Offset = 41
	if l.Origin(dlqTopic) != same.Origin(dlqTopic) {
		t.Errorf("two copies: %q and %q", l.Origin(dlqTopic), same.Origin(dlqTopic))
	}
	for _, o := range []Letter{
		{Pipeline: "outbound", SourceTopic: web, SourcePartition: 2, SourceOffset: 7},
		{Pipeline: "inbound", SourceTopic: web, SourcePartition: 2, SourceOffset: 8},
		{Pipeline: "inbound", SourceTopic: sms, SourcePartition: 2, SourceOffset: 7},
	} {
		if o.Origin(dlqTopic) == l.Origin(dlqTopic) {
			t.Errorf("%+v has the origin of %+v", o, l)
		}
	}
	// Without source headers a dead letter is its own original.
	a := Letter{SourcePartition: -1, SourceOffset: -1, Record: stream.Record{Partition: 1, Offset: 40}}
	b := a
	b.Record.Offset = 41
	if a.Origin(dlqTopic) == b.Origin(dlqTopic) {
		t.Errorf("dead letters without a source share the origin %q", a.Origin(dlqTopic))
	}
}

// stalledRun replays four dead letters in batches of two while, in the middle of writing the first
// batch's records, another run starts at the given time later.
func stalledRun(t *testing.T, later time.Duration) (b *fakekafka.Broker, first Account, firstErr error, second Account, secondErr error) {
	t.Helper()
	b = newMem(map[string]int{dlqTopic: 1, web: 1})
	for i := range 4 {
		add(b, dead(source(web, int64(100+i), "k", valid("k", fmt.Sprint("m", i)), t0), "inbound", "delivery_failed"))
	}
	started := false
	webRecords := map[int]int{} // by Write call
	b.Fail = func(call int, o stream.Output) error {
		if o.Topic != web {
			return nil
		}
		if webRecords[call]++; webRecords[call] == 2 && !started {
			started = true
			other := testReplay(Filter{})
			other.Now = func() time.Time { return t0.Add(later) }
			second, secondErr = other.Run(context.Background(), b)
		}
		return nil
	}
	r := testReplay(Filter{})
	r.BatchSize = 2
	first, firstErr = r.Run(context.Background(), b)
	if !started {
		t.Fatal("the second run did not start")
	}
	return
}

// A run stalled mid-batch for minutes is not taken over: the default window covers it, the other run
// refuses to start, and nothing is replayed twice.
func TestReplayStalledForMinutesIsNotTakenOver(t *testing.T) {
	b, first, err, _, otherErr := stalledRun(t, 5*time.Minute)
	if !errors.Is(otherErr, ErrBusy) {
		t.Errorf("a run 5 minutes into another's batch: %v, want ErrBusy", otherErr)
	}
	if err != nil || first.Replayed != 4 || !first.Exact() {
		t.Errorf("the stalled run: %s %v, want 4 replayed", first, err)
	}
	for of, n := range replaysOf(b, web) {
		if n != 1 {
			t.Errorf("%s replayed %d times", of, n)
		}
	}
}

// A run stalled longer than the window is taken over: the other run recovers its batch and replays the
// rest. Records the stalled run was writing at that moment cannot be kept from being written twice
// (no fencing without transactions), but the stalled run finds the takeover before its done marker,
// stops with ErrTakenOver (exit 1) saying records may be duplicated, and writes no later batch.
func TestReplayStalledPastTheWindowStopsAndSaysSo(t *testing.T) {
	b, first, err, second, otherErr := stalledRun(t, time.Hour)
	if otherErr != nil || second.Recovered != 1 || second.Replayed != 3 || !second.Exact() {
		t.Errorf("the recovering run: %s recovered %d %v, want the written record recovered and 3 replayed", second, second.Recovered, otherErr)
	}
	if !errors.Is(err, ErrTakenOver) || !errors.Is(err, ErrPartial) || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("the stalled run: %v, want ErrTakenOver saying records may be replayed twice", err)
	}
	if first.Read != 2 || first.Unfinished != 2 || !first.Exact() {
		t.Errorf("the stalled run's account: %s, want its batch of 2 unfinished", first)
	}
	// Only the record the stalled run was writing is duplicated; its second batch was not written.
	dups := 0
	for of, n := range replaysOf(b, web) {
		if n > 1 {
			dups += n - 1
			if of != Ref(dlqTopic, 0, 1) {
				t.Errorf("%s replayed %d times: only the in-flight record may be", of, n)
			}
		}
	}
	if len(replaysOf(b, web)) != 4 || dups > 1 {
		t.Errorf("replays %v: want the 4 dead letters, at most the in-flight one twice", replaysOf(b, web))
	}
	// Its batch (dead letters 0 and 1) is closed by the recovering run's done marker only.
	for _, r := range b.Records(dlqTopic) {
		if kind, _ := header(r.Headers, HeaderMarker); kind == "done" {
			var m doneMarker
			_ = json.Unmarshal(r.Value, &m)
			if !m.Recovered && slices.Contains(m.Offsets, 0) {
				t.Errorf("the stalled run wrote the done marker of its taken-over batch: %s", r.Value)
			}
		}
	}
}

// Checking for another run before each batch reads only the markers written since the last check, not
// every marker since the run started (which is quadratic in the batches).
func TestReplayReadsEachMarkerOnceWhileCheckingForOtherRuns(t *testing.T) {
	const n = 50
	b := newMem(map[string]int{dlqTopic: 1, web: 1})
	for i := range n {
		add(b, dead(source(web, int64(100+i), "k", valid("k", fmt.Sprint("m", i)), t0), "inbound", "delivery_failed"))
	}
	h := &hookBroker{Broker: b, read: map[string]int{}}
	r := testReplay(Filter{})
	r.BatchSize = 1
	acct, err := r.Run(context.Background(), h)
	if err != nil || acct.Replayed != n {
		t.Fatalf("%s %v", acct, err)
	}
	// The ledger and the replay read the n dead letters once each; the checks read the 2n markers.
	if got, limit := h.read[dlqTopic], 2*n+2*n; got > limit {
		t.Errorf("%d dead-letter topic records read for %d dead letters in %d batches, want at most %d", got, n, n, limit)
	}
}

// A copy of a dead letter the target refused in an earlier batch of the same run was not replayed: it is
// tried (and refused) too, not counted already replayed.
func TestReplayCopyOfARefusedRecordIsNotCountedReplayed(t *testing.T) {
	b := newMem(map[string]int{dlqTopic: 1, web: 1})
	rec := source(web, 100, "k", valid("k", "big"), t0)
	add(b, dead(rec, "inbound", "delivery_failed"), dead(rec, "inbound", "delivery_failed"))
	b.Fail = func(_ int, o stream.Output) error {
		if o.Topic == web {
			return fmt.Errorf("produce: MESSAGE_TOO_LARGE: %w", stage.ErrTooLarge)
		}
		return nil
	}
	r := testReplay(Filter{})
	r.BatchSize = 1
	acct, err := r.Run(context.Background(), b)
	if err != nil || acct.Unreplayable != 2 || acct.AlreadyReplayed != 0 || !acct.Exact() {
		t.Errorf("%s %v, want both copies unreplayable", acct, err)
	}
}

// A dead letter of the sessions stage replayed to the repartition topic lands where its customer's
// session table is: partitioned by channelCustomerIdentifier with the fast path on (as the pipeline
// writes that topic), by its session key with it off. Other targets keep their key's partition.
func TestReplayPartitionsRepartitionLettersByCustomer(t *testing.T) {
	cfg := config.Default()
	part := Partitioner(cfg)
	key := []byte(session.Key("web", "cust-7"))
	if got := string(part(cfg.Topics.Repartition, key)); got != "cust-7" {
		t.Fatalf("fast path on: partitioned by %q, want the customer", got)
	}
	if got := part(cfg.Topics.Repartition, []byte("conversation:c1")); got != nil {
		t.Fatalf("a reply's key: partitioned by %q, want its own key", got)
	}
	if got := part("cim.inbound.web", key); got != nil {
		t.Fatalf("a channel topic: partitioned by %q, want the record's key", got)
	}
	cfg.Inbound.FastPath = false
	if got := Partitioner(cfg)(cfg.Topics.Repartition, key); got != nil {
		t.Fatalf("fast path off: partitioned by %q, want the session key", got)
	}
}
