package egress

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/pkg/cim"
)

// refuseSink refuses, as a topic outside its timestamp window does, every notification stamped before
// oldest (all of them when oldest is zero), and takes the rest.
type refuseSink struct {
	rvSink
	oldest time.Time
}

func (s *refuseSink) Write(ctx context.Context, outs []stream.Output) []error {
	errs := make([]error, len(outs))
	var taken []stream.Output
	for i, o := range outs {
		if o.Topic == "notes" && (s.oldest.IsZero() || o.Time.Before(s.oldest)) {
			errs[i] = fmt.Errorf("timestamp out of range: %w", stage.ErrRefused)
			continue
		}
		taken = append(taken, o)
	}
	s.mu.Lock()
	s.written = append(s.written, taken...)
	s.mu.Unlock()
	return errs
}

// Promise: every input ends as an output or a dead letter. A connector's forwarded DELIVERYNOTIFICATION the
// notifications topic refuses for its timestamp (the original record's, after a long retry) is written
// with the time of now; one refused for good becomes a dead letter carrying it, instead of being dropped.
func TestForwardedNotificationRefused(t *testing.T) {
	note := connectorNote()
	if !isNotification([]byte(note), cim.Limits{}) {
		t.Fatal("fixture is not a valid notification")
	}
	for _, tc := range []struct {
		name   string
		oldest time.Time
		topic  string
	}{
		{"restamped", time.Now().Add(-time.Minute), "notes"},
		{"dead-lettered", time.Time{}, "dead"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newRvBroker()
			b.add("t", 0, 0, "K", "m")
			b.logs["t"][0][0].Time = time.Now().Add(-time.Hour)
			sink := &refuseSink{oldest: tc.oldest}
			deliverOnce(t, b, sink, note)
			sink.mu.Lock()
			defer sink.mu.Unlock()
			if len(sink.written) != 1 || sink.written[0].Topic != tc.topic {
				t.Fatalf("written %v, want one record to %s", sink.written, tc.topic)
			}
			if tc.topic == "dead" && string(sink.written[0].Value) != note {
				t.Errorf("the dead letter carries %q, want the connector's notification", sink.written[0].Value)
			}
		})
	}
}

func connectorNote() string {
	return `{"id":"dn-1","header":{"sender":{"id":"wa","type":"CONNECTOR","senderName":"wa"},` +
		`"channelData":{"serviceIdentifier":"svc","channelCustomerIdentifier":"c"},"conversationId":"c-x"},` +
		`"body":{"type":"DELIVERYNOTIFICATION","messageId":"m1","status":"DELIVERED","reasonCode":200}}`
}

// countObs counts what the runtime reports.
type countObs struct {
	stage.NopObserver
	mu                            sync.Mutex
	consumed, produced, dead, ret int
	codes                         []string
}

func (o *countObs) Consumed(_, _ string, n int) { o.mu.Lock(); o.consumed += n; o.mu.Unlock() }
func (o *countObs) Produced(_, _ string, n int) { o.mu.Lock(); o.produced += n; o.mu.Unlock() }
func (o *countObs) Retried(_ string, n int)     { o.mu.Lock(); o.ret += n; o.mu.Unlock() }
func (o *countObs) DeadLettered(_ string, _ stream.Record, c []string) {
	o.mu.Lock()
	o.dead++
	o.codes = append(o.codes, c...)
	o.mu.Unlock()
}

// deadRefusingSink refuses every dead letter for good (a policy violation on the dead-letter topic) and
// counts the write calls.
type deadRefusingSink struct {
	calls atomic.Int64
}

func (s *deadRefusingSink) Write(_ context.Context, outs []stream.Output) []error {
	s.calls.Add(1)
	errs := make([]error, len(outs))
	for i, o := range outs {
		if o.Topic == "dead" {
			errs[i] = fmt.Errorf("policy violation: %w", stage.ErrRefused)
		}
	}
	return errs
}

// A dead-letter topic whose policy refuses every dead letter: after the one rewrite with the time of now,
// the retries back off like any failed write instead of looping (75,000 requests in 300 ms before).
func TestDeadLetterTopicRefusingEverythingIsRetriedWithBackoff(t *testing.T) {
	b := newRvBroker()
	b.add("t", 0, 0, "K", `{"n":1}`)
	sink := &deadRefusingSink{}
	p := &rvPoster{answer: func(context.Context, stream.Record) Attempt { return Attempt{Status: http.StatusBadRequest} }}
	c := rvChannel(b, sink, p, "t", 8, nil)
	c.cfg.DeadLetters.Topic = "dead"
	stop := runOwner(b, c)
	g := b.startGen("t", 0)
	time.Sleep(300 * time.Millisecond)
	g.end()
	stop()
	t.Logf("write calls in ~300ms: %d", sink.calls.Load())
	if sink.calls.Load() > 50 {
		t.Errorf("%d writes in 300 ms: no backoff between refused dead-letter retries", sink.calls.Load())
	}
}

// A dead letter decided but never acknowledged before the partition moves is not counted: the owner that
// writes it counts it (it was counted when built, so twice over a rebalance).
func TestDeadLetterCountedOnlyOnceWritten(t *testing.T) {
	b := newRvBroker()
	b.add("t", 0, 0, "K", `{"n":1}`)
	sink := &rvSink{block: true}
	obs := &countObs{}
	p := &rvPoster{answer: func(context.Context, stream.Record) Attempt { return Attempt{Status: http.StatusBadRequest} }}
	c := rvChannel(b, sink, p, "t", 8, nil)
	c.cfg.DeadLetters.Topic = "dead"
	c.cfg.Runner = obs
	stop := runOwner(b, c)
	g := b.startGen("t", 0)
	waitUntil(t, "POSTed", func() bool { return len(p.posted()) == 1 })
	time.Sleep(50 * time.Millisecond)
	g.end()
	stop()
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if om, _ := b.commit("t", 0); om.Offset > 0 {
		t.Fatalf("committed %d", om.Offset)
	}
	if obs.dead != 0 {
		t.Errorf("DeadLettered counted %d for a dead letter never written (the next owner counts it again)", obs.dead)
	}
}
