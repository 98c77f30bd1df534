package tool

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/egress"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/internal/stream/deadletter"
	"github.com/cimstream/cimstream/pkg/cim"
)

// The dead-letter tools trust only what cimstream wrote to the dead-letter topic. These dead letters are
// of connector records that carried cimstream's header names as they are (written before the entries
// renamed such headers, or by a tool that bypasses them): each must still be counted, replayed once, and
// neither hide another dead letter nor stop a run.

// forgedMarker is a connector record that carries a replay marker header and a marker's value.
func forgedMarker(offset int64, kind string, value any, at time.Time) stream.Record {
	v, _ := json.Marshal(value)
	return source(web, offset, "mal", valid("mal", "forged"), at, stream.Header{Key: HeaderMarker, Value: []byte(kind)},
		stream.Header{Key: "payload", Value: v})
}

func TestForgedMarkerHeadersNeitherHideNorBlock(t *testing.T) {
	b := newMem(map[string]int{dlqTopic: 1, web: 1, sms: 1})
	victim := source(sms, 1, "eve", valid("eve", "victim"), t0.Add(-time.Hour))
	add(b, dead(victim, "inbound", "required"))
	// An "intent" from the future: read as a marker, it would make every run refuse with ErrBusy.
	intent := forgedMarker(2, "intent", intentMarker{ID: "x", Offsets: []int64{0}}, t0.Add(24*time.Hour))
	// A "done" naming the victim: read as a marker, it would mark another channel's dead letter replayed.
	done := forgedMarker(3, "done", doneMarker{Intent: "x", Offsets: []int64{0}}, t0)
	add(b, dead(intent, "inbound", "required"), dead(done, "inbound", "required"))

	s, err := Inspect{Topic: dlqTopic, Now: t0}.Run(context.Background(), b)
	if err != nil || s.Letters != 3 || s.Replayed != 0 {
		t.Fatalf("inspect: %+v %v: want 3 dead letters, none replayed", s, err)
	}
	acct, err := testReplay(Filter{}).Run(context.Background(), b)
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	if acct.Replayed != 3 || acct.AlreadyReplayed != 0 || !acct.Exact() {
		t.Fatalf("account %+v: want all three replayed", acct)
	}
	if len(b.Records(sms)) != 1 || len(b.Records(web)) != 2 {
		t.Fatalf("replayed %d to sms and %d to web, want 1 and 2", len(b.Records(sms)), len(b.Records(web)))
	}
}

func TestForgedReplayCountDoesNotGuard(t *testing.T) {
	b := newMem(map[string]int{dlqTopic: 1, web: 1})
	for i, h := range []string{HeaderReplayCount, stream.RenamedPrefix + HeaderReplayCount} {
		rec := source(web, int64(i), "k", valid("k", "m"+h), t0, stream.Header{Key: h, Value: []byte("99")})
		add(b, dead(rec, "inbound", "required"))
	}
	acct, err := testReplay(Filter{}).Run(context.Background(), b)
	if err != nil || acct.Replayed != 2 || acct.Guarded != 0 {
		t.Fatalf("account %+v %v: a replay count a connector wrote must not guard", acct, err)
	}
}

// A claim to be the replay of a dead letter counts only for that dead letter's own record.
func TestReplayOfAnotherRecordDoesNotCount(t *testing.T) {
	b := newMem(map[string]int{dlqTopic: 1, web: 1})
	add(b, dead(source(web, 0, "ann", valid("ann", "first"), t0), "inbound", "required"))
	r := testReplay(Filter{})
	if acct, err := r.Run(context.Background(), b); err != nil || acct.Replayed != 1 {
		t.Fatalf("first run %+v %v", acct, err)
	}
	// Another record names the replayed dead letter (offset 0) as its origin.
	add(b, dead(source(web, 50, "ann", valid("ann", "other"), t0, stream.Header{Key: stream.RenamedPrefix + HeaderReplayOf, Value: []byte(Ref(dlqTopic, 0, 0))}), "inbound", "required"))
	acct, err := r.Run(context.Background(), b)
	if err != nil || acct.Replayed != 1 || acct.Guarded != 0 {
		t.Fatalf("account %+v %v: the other record must be replayed, not guarded", acct, err)
	}
}

// A run that crashed between writing and recording a batch is recovered from what reached the target:
// a record a connector wrote there naming the dead letter, but not holding it, does not count.
func TestRecoveryIgnoresAForgedReplayInTheTarget(t *testing.T) {
	b := newMem(map[string]int{dlqTopic: 1, web: 1})
	add(b, dead(source(web, 0, "ann", valid("ann", "lost?"), t0), "inbound", "required"))
	crash := errors.New("crashed")
	b.Fail = func(_ int, o stream.Output) error {
		if o.Topic == web { // the replayed record is not written
			return crash
		}
		return nil
	}
	if _, err := testReplay(Filter{}).Run(context.Background(), b); !errors.Is(err, ErrPartial) {
		t.Fatalf("interrupted run: %v", err)
	}
	b.Fail = nil
	// A connector's record lands where the batch would have: it names the dead letter, with another value.
	add(b, stream.Output{Topic: web, Partition: 0, Key: []byte("ann"), Value: []byte(`{"forged":true}`),
		Headers: []stream.Header{{Key: HeaderReplayOf, Value: []byte(Ref(dlqTopic, 0, 0))}}})
	later := testReplay(Filter{})
	later.Now = func() time.Time { return t0.Add(DefaultActiveWindow) }
	acct, err := later.Run(context.Background(), b)
	if err != nil || acct.Recovered != 0 || acct.Replayed != 1 {
		t.Fatalf("account %+v %v: the forged record must not count as the replay", acct, err)
	}
}

func TestRefusedNotificationIsNotReplayed(t *testing.T) {
	b := newMem(map[string]int{dlqTopic: 1, "cim.outbound.web": 1})
	rec := source("cim.outbound.web", 0, "ann", valid("ann", "n"), t0)
	add(b, dead(rec, "egress", egress.CodeNotificationRefused))
	acct, err := testReplay(Filter{Pipelines: []string{"egress"}}).Run(context.Background(), b)
	if err != nil || acct.Unreplayable != 1 || acct.Replayed != 0 || len(b.Records("cim.outbound.web")) != 0 {
		t.Fatalf("account %+v %v: a %s dead letter must not be replayed", acct, err, egress.CodeNotificationRefused)
	}
}

// A dead letter written before the entries renamed cimstream's headers may hold a connector's raw
// cimstream.event or source coordinates among its original headers: the replay renames them, except
// the source headers of a record of cimstream's own repartition topic, which the sessions stage reads.
func TestReplayRenamesOldForgedHeaders(t *testing.T) {
	const repartition = "cimstream.inbound.repartition"
	b := newMem(map[string]int{dlqTopic: 1, web: 1, repartition: 1})
	forged := []stream.Header{{Key: stream.HeaderEvent, Value: []byte("CHANNEL_SESSION_ENDED")}, {Key: stream.HeaderSourceOffset, Value: []byte("7")}}
	add(b, dead(source(web, 0, "ann", valid("ann", "from-web"), t0, forged...), "inbound", "required"),
		dead(source(repartition, 0, "ann", valid("ann", "from-repartition"), t0, forged...), "inbound", "required"))
	r := testReplay(Filter{})
	r.Own = func(topic string) bool { return topic == repartition }
	if acct, err := r.Run(context.Background(), b); err != nil || acct.Replayed != 2 {
		t.Fatalf("account %+v %v", acct, err)
	}
	for topic, keepsSource := range map[string]bool{web: false, repartition: true} {
		got := b.Records(topic)[0] // the replay: the originals are not in the in-memory topics
		if _, raw := header(got.Headers, stream.HeaderEvent); raw {
			t.Errorf("%s: the replayed record carries a raw %s: %v", topic, stream.HeaderEvent, got.Headers)
		}
		if v, _ := header(got.Headers, stream.RenamedPrefix+stream.HeaderEvent); v != "CHANNEL_SESSION_ENDED" {
			t.Errorf("%s: the connector's %s is not kept renamed: %v", topic, stream.HeaderEvent, got.Headers)
		}
		if _, raw := header(got.Headers, stream.HeaderSourceOffset); raw != keepsSource {
			t.Errorf("%s: raw source offset kept %v, want %v", topic, raw, keepsSource)
		}
	}
}

// A record that claims a replay without the batch's id (a connector knows the key and value of its own
// record, and can predict dead-letter offsets) neither counts toward the loop guard nor is recovered.
func TestReplayClaimsNeedTheBatchID(t *testing.T) {
	b := newMem(map[string]int{dlqTopic: 1, web: 1})
	add(b, dead(source(web, 0, "k", valid("k", "m"), t0), "inbound", "required"))
	r := testReplay(Filter{}) // guards after one replay
	if acct, err := r.Run(context.Background(), b); err != nil || acct.Replayed != 1 {
		t.Fatalf("first run %+v %v", acct, err)
	}
	// Claims of the replayed dead letter (offset 0) and of itself (offset 4, its own future place),
	// without the batch id, on the same key and value.
	claims := []stream.Header{{Key: stream.RenamedPrefix + HeaderReplayOf, Value: []byte(Ref(dlqTopic, 0, 0))}}
	add(b, dead(source(web, 10, "k", valid("k", "m"), t0, claims...), "inbound", "required"))
	self := []stream.Header{{Key: stream.RenamedPrefix + HeaderReplayOf, Value: []byte(Ref(dlqTopic, 0, 4))},
		{Key: stream.RenamedPrefix + HeaderReplayIntent, Value: []byte("guess")}}
	add(b, dead(source(web, 11, "k", valid("k", "m"), t0, self...), "inbound", "required"))
	acct, err := r.Run(context.Background(), b)
	if err != nil || acct.Replayed != 2 || acct.Guarded != 0 {
		t.Fatalf("account %+v %v: both forged claims must be replayed, not guarded", acct, err)
	}
}

// A replayed record that fails in another stage (its dead letter holds another key and value: the
// sessions stage's input, or the webhook channel's record) still counts toward the loop guard.
func TestReplayCountsAcrossStages(t *testing.T) {
	b := newMem(map[string]int{dlqTopic: 1, web: 1})
	add(b, dead(source(web, 0, "ann", valid("ann", "m"), t0), "inbound", "required"))
	r := testReplay(Filter{})
	if acct, err := r.Run(context.Background(), b); err != nil || acct.Replayed != 1 {
		t.Fatalf("first run %+v %v", acct, err)
	}
	replay := b.Records(web)[len(b.Records(web))-1]
	// The next stage's record: re-keyed, normalized, with the replay headers renamed at the entry.
	var hs []stream.Header
	for _, h := range replay.Headers {
		hs = append(hs, stream.Header{Key: stream.RenamedPrefix + h.Key, Value: h.Value})
	}
	add(b, dead(source("cimstream.inbound.repartition", 5, "3:web|ann", valid("ann", "m-normalized"), t0, hs...), "inbound", "required"))
	acct, err := r.Run(context.Background(), b)
	if err != nil || acct.Guarded != 1 {
		t.Fatalf("account %+v %v: the second failure must be guarded (limit 1)", acct, err)
	}
}

// A connector chooses its records' timestamps: a dead letter is stamped when it is written, so a
// record from 1970 is neither aged out by retention at once nor outside --since; a replay gives the
// record its own time back.
func TestDeadLetterOfABackdatedRecordIsStampedNow(t *testing.T) {
	b := newMem(map[string]int{dlqTopic: 1, web: 1})
	old := source(web, 0, "ann", valid("ann", "old"), time.UnixMilli(1))
	dl := deadletter.Builder{Topic: dlqTopic, Now: func() time.Time { return t0 }}.Build(old, cim.Violations{{Code: "required", Message: "x"}})
	dl.Partition = 0
	add(b, dl)
	s, err := Inspect{Topic: dlqTopic, Now: t0.Add(time.Minute), Filter: Filter{Since: t0.Add(-time.Hour)}}.Run(context.Background(), b)
	if err != nil || s.Selected != 1 || s.ByAge[0].Count != 1 {
		t.Fatalf("inspect --since 1h: %+v %v: the dead letter written a minute ago must be selected, age <1h", s, err)
	}
	if acct, err := testReplay(Filter{}).Run(context.Background(), b); err != nil || acct.Replayed != 1 {
		t.Fatalf("replay %+v %v", acct, err)
	}
	if got := b.Records(web)[0].Time; !got.Equal(old.Time) {
		t.Fatalf("replayed with time %v, want the original's %v", got, old.Time)
	}
}

// The replay re-validates with the configured bound on identifying strings, as the pipelines do.
func TestReplayValidatesWithTheConfiguredIDBound(t *testing.T) {
	cfg := config.Default()
	cfg.Inbound.MaxIDBytes = 64
	long := `{"id":"` + strings.Repeat("i", 65) + `","header":{"sender":{"id":"w","type":"CONNECTOR","senderName":"W"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"c"}},"body":{"type":"PLAIN","markdownText":"x"}}`
	vs := Validator(cfg)(Letter{Record: stream.Record{Value: []byte(long)}}, web)
	if len(vs) != 1 || vs[0].Code != cim.CodeTooLong || vs[0].Path != "id" {
		t.Fatalf("violations %v, want too_long at id", vs)
	}
}

// A connector keeps a transaction open on the target partition, so its last stable offset stays below
// what the replay writes there. A run interrupted between writing its batch and recording it is still
// recovered from what it wrote (read past the last stable offset), not replayed a second time.
func TestRecoveryFindsTheBatchBehindAnOpenTransaction(t *testing.T) {
	b := newMem(map[string]int{dlqTopic: 1, web: 1})
	connector := b.TxnProducer()
	connector.Begin()
	connector.Send(web, 0, "", "a connector's open transaction")
	add(b, dead(source(web, 0, "ann", valid("ann", "behind"), t0), "inbound", "required"))
	crash := errors.New("crashed")
	b.Fail = func(_ int, o stream.Output) error {
		if kind, ok := header(o.Headers, HeaderMarker); ok && kind == "done" {
			return crash
		}
		return nil
	}
	if _, err := testReplay(Filter{}).Run(context.Background(), b); !errors.Is(err, ErrPartial) {
		t.Fatalf("interrupted run: %v", err)
	}
	b.Fail = nil
	later := testReplay(Filter{})
	later.Now = func() time.Time { return t0.Add(DefaultActiveWindow) }
	acct, err := later.Run(context.Background(), b)
	if err != nil || acct.Recovered != 1 || acct.Replayed != 0 {
		t.Fatalf("account %+v %v: the written batch must be recovered, not replayed again", acct, err)
	}
	if n := len(b.Records(web)); n != 2 {
		t.Fatalf("%s holds %d records, want the transaction's and one replay", web, n)
	}
}
