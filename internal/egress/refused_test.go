package egress

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/kafkatest/fakekafka"
	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/pkg/cim"
)

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
		refuse func(b *fakekafka.Broker) // how the notifications topic refuses a notification stamped an hour ago
		topic  string
	}{
		{"restamped", func(b *fakekafka.Broker) {
			b.CreateTopic("notes", 1, kafka.ConfigEntry{ConfigName: "message.timestamp.before.max.ms", ConfigValue: "60000"})
		}, "notes"},
		{"dead-lettered", func(b *fakekafka.Broker) { b.Fail = failing("notes", errRefusedForGood) }, "dead"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBroker(1)
			tc.refuse(b)
			m := message(0, "K", "m")
			m.Time = time.Now().Add(-time.Hour)
			produce(t, b, m)
			deliverOnce(t, b, note)
			written := append(b.Records("notes"), b.Records("dead")...)
			if len(written) != 1 || written[0].Topic != tc.topic {
				t.Fatalf("written %s, want one record to %s", topicsOf(written), tc.topic)
			}
			if tc.topic == "dead" && string(written[0].Value) != note {
				t.Errorf("the dead letter carries %q, want the connector's notification", written[0].Value)
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

// A dead-letter topic whose policy refuses every dead letter: after the one rewrite with the time of now,
// the retries back off like any failed write instead of looping (75,000 requests in 300 ms before).
func TestDeadLetterTopicRefusingEverythingIsRetriedWithBackoff(t *testing.T) {
	b := newBroker(1)
	produce(t, b, message(0, "K", `{"n":1}`))
	var calls atomic.Int64 // write calls made, as of the last one that carried the dead letter
	b.Fail = func(call int, o stream.Output) error {
		if o.Topic != "dead" {
			return nil
		}
		calls.Store(int64(call))
		return errRefusedForGood
	}
	p := answering(func(context.Context, stream.Record) Attempt { return Attempt{Status: http.StatusBadRequest} })
	stop := start(newTestChannel(b, p, 8))
	time.Sleep(300 * time.Millisecond)
	stop()
	t.Logf("write calls in ~300ms: %d", calls.Load())
	if calls.Load() > 50 {
		t.Errorf("%d writes in 300 ms: no backoff between refused dead-letter retries", calls.Load())
	}
}

// A dead letter decided but never acknowledged before the partition moves is not counted: the owner that
// writes it counts it (it was counted when built, so twice over a rebalance).
func TestDeadLetterCountedOnlyOnceWritten(t *testing.T) {
	b := newBroker(1)
	produce(t, b, message(0, "K", `{"n":1}`))
	b.Fail = failing("dead", errUnavailable)
	obs := &countObs{}
	p := answering(func(context.Context, stream.Record) Attempt { return Attempt{Status: http.StatusBadRequest} })
	c := newTestChannel(b, p, 8)
	c.cfg.Runner = obs
	stop := start(c)
	waitUntil(t, "POSTed", func() bool { return len(p.posted()) == 1 })
	time.Sleep(50 * time.Millisecond)
	moveAway(b, stop)
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if om := committed(b); om.Offset > 0 {
		t.Fatalf("committed %d", om.Offset)
	}
	if obs.dead != 0 {
		t.Errorf("DeadLettered counted %d for a dead letter never written (the next owner counts it again)", obs.dead)
	}
}
