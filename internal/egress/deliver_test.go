package egress

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/internal/stream/deadletter"
	"github.com/cimstream/cimstream/pkg/cim"
)

// script answers attempts in turn (the last answer repeats) and counts them.
type script struct {
	answers []Attempt
	n       int
}

func (s *script) Post(context.Context, stream.Record, int) Attempt {
	a := s.answers[min(s.n, len(s.answers)-1)]
	s.n++
	return a
}

// fakeClock moves only when the deliverer sleeps.
type fakeClock struct{ now time.Time }

func (c *fakeClock) sleep(_ context.Context, d time.Duration) bool { c.now = c.now.Add(d); return true }

func testDeliverer(post Poster, retry RetryPolicy) (*deliverer, *fakeClock) {
	c := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	return &deliverer{channel: "web", post: post, retry: retry, slots: make(chan struct{}, 1), obs: nopObserver{},
		now: func() time.Time { return c.now }, sleep: c.sleep}, c
}

// TestDeliverDeadlineReachedExactly: an attempt is made only when it starts before the deadline. With
// Retry-After 10s dominating a backoff of at most 1.2s, attempts fall at 0s and 10s; the third would start
// at 20s: never under a 20s deadline, once under a deadline a nanosecond longer.
func TestDeliverDeadlineReachedExactly(t *testing.T) {
	busy := Attempt{Status: http.StatusTooManyRequests, RetryAfter: 10 * time.Second}
	for _, tc := range []struct {
		deadline time.Duration
		attempts int
	}{{20 * time.Second, 2}, {20*time.Second + time.Nanosecond, 3}, {10 * time.Second, 1}} {
		s := &script{answers: []Attempt{busy}}
		d, clock := testDeliverer(s, RetryPolicy{MinBackoff: time.Second, MaxBackoff: time.Second, Deadline: tc.deadline})
		start := clock.now
		v, ok := d.deliver(context.Background(), stream.Record{Value: []byte("{}")})
		if !ok || v.Kind != Failed {
			t.Fatalf("deadline %v: verdict %v %v, want failed", tc.deadline, v.Kind, ok)
		}
		if s.n != tc.attempts {
			t.Errorf("deadline %v: %d attempts, want %d", tc.deadline, s.n, tc.attempts)
		}
		if waited := clock.now.Sub(start); waited >= tc.deadline {
			t.Errorf("deadline %v: slept %v, past the deadline", tc.deadline, waited)
		}
	}
}

// TestDeliverRetriesUntilAnswer: 500, a timeout and a redirect are retried; the 200 after them decides.
func TestDeliverRetriesUntilAnswer(t *testing.T) {
	s := &script{answers: []Attempt{{Status: 500}, {Err: context.DeadlineExceeded}, {Status: 302}, {Status: 202}}}
	d, _ := testDeliverer(s, RetryPolicy{MinBackoff: time.Second, MaxBackoff: 4 * time.Second, Deadline: time.Hour})
	v, ok := d.deliver(context.Background(), stream.Record{Value: []byte("{}")})
	if !ok || v.Kind != Accepted || s.n != 4 {
		t.Fatalf("verdict %v %v after %d attempts, want accepted after 4", v.Kind, ok, s.n)
	}
}

// TestDeliverStopsWithContext: a stop during retries leaves the message undecided.
func TestDeliverStopsWithContext(t *testing.T) {
	s := &script{answers: []Attempt{{Status: 503}}}
	d, _ := testDeliverer(s, RetryPolicy{MinBackoff: time.Second, MaxBackoff: time.Second, Deadline: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	d.sleep = func(context.Context, time.Duration) bool { cancel(); return false }
	if _, ok := d.deliver(ctx, stream.Record{Value: []byte("{}")}); ok {
		t.Fatal("a stopped delivery must not be decided")
	}
}

const note = `{"id":"n-1","header":{"sender":{"id":"wa","type":"CONNECTOR","senderName":"wa"},"channelData":{"serviceIdentifier":"s","channelCustomerIdentifier":"c"}},` +
	`"body":{"type":"DELIVERYNOTIFICATION","messageId":"m-1","status":"DELIVERED","reasonCode":200}}`

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name   string
		a      Attempt
		kind   Kind
		reason int
	}{
		{"200 with a notification", Attempt{Status: 200, Body: []byte(note)}, Forwarded, 0},
		{"200 with plain text", Attempt{Status: 200, Body: []byte("ok")}, Accepted, 0},
		{"200 with another CIM body", Attempt{Status: 200, Body: []byte(strings.Replace(note, "DELIVERYNOTIFICATION", "PLAIN", 1))}, Accepted, 0},
		{"200 with an invalid notification", Attempt{Status: 200, Body: []byte(strings.Replace(note, `"DELIVERED"`, `"LOST"`, 1))}, Accepted, 0},
		{"202", Attempt{Status: 202}, Accepted, 0},
		{"204", Attempt{Status: 204}, Accepted, 0},
		{"301", Attempt{Status: 301}, Retry, 0},
		{"400", Attempt{Status: 400}, Rejected, 400},
		{"404", Attempt{Status: 404}, Rejected, 404},
		{"408", Attempt{Status: 408}, Retry, 0},
		{"429", Attempt{Status: 429}, Retry, 0},
		{"500", Attempt{Status: 500}, Retry, 0},
		{"503", Attempt{Status: 503}, Retry, 0},
		{"connection refused", Attempt{Err: errors.New("connection refused")}, Retry, 0},
	} {
		v := Classify(tc.a, cim.Limits{})
		if v.Kind != tc.kind || v.Reason != tc.reason {
			t.Errorf("%s: %v/%d, want %v/%d", tc.name, v.Kind, v.Reason, tc.kind, tc.reason)
		}
	}
}

// A notification answer is checked with the configured id bound (inbound.maxIdBytes), as the pipelines
// check the connector's own receipts: over it, it is not forwarded; under a raised bound, it is.
func TestClassifyUsesTheConfiguredIDBound(t *testing.T) {
	id := strings.Repeat("m", 100)
	body := []byte(strings.Replace(note, `"messageId":"`, `"messageId":"`+id, 1))
	if v := Classify(Attempt{Status: 200, Body: body}, cim.Limits{MaxIDBytes: 64}); v.Kind != Accepted {
		t.Errorf("a 100-byte messageId under a 64-byte bound: %v, want it not forwarded", v.Kind)
	}
	long := []byte(strings.Replace(note, `"messageId":"`, `"messageId":"`+strings.Repeat("m", 1500), 1))
	if v := Classify(Attempt{Status: 200, Body: long}, cim.Limits{MaxIDBytes: 2048}); v.Kind != Forwarded {
		t.Errorf("a 1500-byte messageId under a 2048-byte bound: %v, want it forwarded", v.Kind)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"": 0, "7": 7 * time.Second, "-3": 0, "soon": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Minute).Format(http.TimeFormat):     0,
	} {
		if got := retryAfter(v, now); got != want {
			t.Errorf("Retry-After %q: %v, want %v", v, got, want)
		}
	}
}

// TestOutcomeRecords: a rejection is a FAILED notification with the connector's status and a dead letter
// with the original value; an accepted message writes nothing; a forwarded notification goes as it came.
func TestOutcomeRecords(t *testing.T) {
	o := testOutcomes{outcome{notifications: "n"}, deadletter.Builder{Topic: "dlq", Pipeline: "egress"}}
	msg := `{"id":"m-1","header":{"conversationId":"conv-1"},"body":{"type":"PLAIN","markdownText":"hi"}}`
	r := stream.Record{Topic: "cim.outbound.web", Offset: 7, Key: []byte("cust"), Value: []byte(msg)}
	outs := o.records(r, Answer{Kind: Rejected, Reason: 422, Why: "HTTP 422"})
	if len(outs) != 2 || outs[0].Topic != "n" || outs[1].Topic != "dlq" {
		t.Fatalf("rejected: %+v", outs)
	}
	if v := string(outs[0].Value); !strings.Contains(v, `"status":"FAILED"`) || !strings.Contains(v, `"reasonCode":422`) || !strings.Contains(v, `"messageId":"m-1"`) {
		t.Errorf("rejected notification: %s", v)
	}
	if string(outs[0].Key) != "conv-1" || string(outs[1].Value) != msg {
		t.Errorf("notification key %q, dead letter value %s", outs[0].Key, outs[1].Value)
	}
	if outs := o.records(r, Answer{Kind: Failed, Why: "x"}); len(outs) != 2 || !strings.Contains(string(outs[0].Value), `"reasonCode":500`) {
		t.Errorf("failed: %+v", outs)
	}
	if outs := o.records(r, Answer{Kind: Accepted}); len(outs) != 0 {
		t.Errorf("accepted wrote %d records", len(outs))
	}
	if outs := o.records(r, Answer{Kind: Forwarded, Note: []byte(note)}); len(outs) != 1 || string(outs[0].Value) != note || string(outs[0].Key) != "conv-1" {
		t.Errorf("forwarded: %+v", outs)
	}
}

// blockingPoster answers status once released.
type blockingPoster struct {
	sent    chan struct{}
	release chan struct{}
	status  int
}

func (p blockingPoster) Post(ctx context.Context, _ stream.Record, _ int) Attempt {
	p.sent <- struct{}{}
	select {
	case <-p.release:
		return Attempt{Status: p.status}
	case <-ctx.Done():
		return Attempt{Err: ctx.Err()}
	}
}

// TestDeliverDrainsAPostInFlight: a stop while a POST is in flight lets it finish; a deciding answer is
// kept (so the message is recorded, not sent again by the next owner), a 5xx is not retried.
func TestDeliverDrainsAPostInFlight(t *testing.T) {
	for _, tc := range []struct {
		status int
		ok     bool
	}{{202, true}, {503, false}} {
		p := blockingPoster{sent: make(chan struct{}, 1), release: make(chan struct{}), status: tc.status}
		d, _ := testDeliverer(p, RetryPolicy{MinBackoff: time.Second, MaxBackoff: time.Second, Deadline: time.Hour})
		ctx, stop := context.WithCancel(context.Background())
		type result struct {
			v  Answer
			ok bool
		}
		done := make(chan result, 1)
		go func() {
			v, ok := d.deliverDraining(ctx, context.Background(), stream.Record{Value: []byte("{}")})
			done <- result{v, ok}
		}()
		<-p.sent
		stop()
		close(p.release)
		r := <-done
		if r.ok != tc.ok || (tc.ok && r.v.Kind != Accepted) {
			t.Errorf("answer %d after the stop: %v %v, want decided=%v", tc.status, r.v.Kind, r.ok, tc.ok)
		}
	}
}

// TestDeliverNothingForARecordWithoutValue: a record with no value (deleted by retention before its turn,
// or a tombstone) is never POSTed: it is FAILED, which writes FAILED/500 and a dead letter.
func TestDeliverNothingForARecordWithoutValue(t *testing.T) {
	s := &script{answers: []Attempt{{Status: 202}}}
	d, _ := testDeliverer(s, RetryPolicy{MinBackoff: time.Second, MaxBackoff: time.Second, Deadline: time.Hour})
	v, ok := d.deliver(context.Background(), stream.Record{Topic: "cim.outbound.web", Offset: 7})
	if !ok || v.Kind != Failed || s.n != 0 {
		t.Fatalf("verdict %v %v after %d POSTs, want failed without a POST", v.Kind, ok, s.n)
	}
	outs := testOutcomes{outcome{notifications: "notes"}, deadletter.Builder{Topic: "dlq"}}.records(stream.Record{Topic: "cim.outbound.web", Offset: 7}, v)
	if len(outs) != 2 || outs[1].Topic != "dlq" {
		t.Fatalf("want a FAILED notification and a dead letter, got %d outputs", len(outs))
	}
	// A nil value would be a tombstone on the dead-letter topic: compaction and consumers take it as a delete.
	dl := outs[1]
	if dl.Value == nil || len(dl.Value) != 0 {
		t.Errorf("dead letter value %q (nil %v), want empty, not null", dl.Value, dl.Value == nil)
	}
	if gone, _ := (stream.Record{Headers: dl.Headers}).Header(HeaderValueMissing); string(gone) != "true" {
		t.Errorf("header %s = %q, want true", HeaderValueMissing, gone)
	}
	// Among cimstream's headers (after the codes), not the original ones a replay would re-produce.
	if last := dl.Headers[len(dl.Headers)-1]; last.Key != HeaderValueMissing {
		t.Errorf("last header %s, want %s after cimstream's", last.Key, HeaderValueMissing)
	}
}

// testOutcomes renders a verdict as the runtime writes it: the Result's records, then its dead letter.
type testOutcomes struct {
	outcome
	deadLetters deadletter.Builder
}

func (o testOutcomes) records(rec stream.Record, v Answer) []stream.Output {
	res := o.result(rec, v)
	outs := res.Outputs
	if len(res.Reject) > 0 {
		dl := rec
		if res.DeadLetterValue != nil {
			dl.Value = res.DeadLetterValue
		}
		outs = append(outs, o.deadLetters.Build(dl, res.Reject))
	}
	return outs
}
