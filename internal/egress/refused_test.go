package egress

import (
	"context"
	"fmt"
	"net/http"
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
			p := &rvPoster{answer: func(context.Context, stream.Record) Attempt {
				return Attempt{Status: http.StatusOK, Body: []byte(note)}
			}}
			c := rvChannel(b, sink, p, "t", 10, nil)
			c.cfg.DeadLetters.Topic = "dead"
			stop := runOwner(b, c)
			g := b.startGen("t", 0)
			waitUntil(t, "committed 1", func() bool { om, _ := b.commit("t", 0); return om.Offset == 1 })
			g.end()
			stop()
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
