package inbound

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/session"
	"github.com/cimstream/cimstream/internal/stream"
)

const fastPartitions = 4

// fastInput is a day of traffic on one channel topic keyed by customer (each record on its customer's
// home partition, as a connector keying by channelCustomerIdentifier writes it): session messages with
// idle gaps, START_CHAT and END_CHAT, a NOTIFICATION, replies without channel data, a receipt, an
// invalid record, and records without a timestamp or dated far ahead.
func fastInput() []stream.Record {
	base := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	var recs []stream.Record
	offsets := map[int]int64{}
	add := func(customer, value string, at time.Time) {
		p := kafkaedge.HomePartition([]byte(customer), fastPartitions)
		recs = append(recs, stream.Record{Topic: "cim.inbound.web", Partition: p, Offset: offsets[p], Key: []byte(customer),
			Value: []byte(value), Headers: []stream.Header{{Key: "trace", Value: []byte(fmt.Sprint("t-", len(recs)))}}, Time: at})
		offsets[p]++
	}
	for i := range 40 {
		c := fmt.Sprint("cust-", i%7)
		at := base.Add(time.Duration(i) * 20 * time.Second)
		switch i % 10 {
		case 3:
			add(c, text(c, fmt.Sprint("m", i), `,"intent":"START_CHAT"`), at)
		case 5:
			add(c, text(c, fmt.Sprint("m", i), `,"intent":"END_CHAT"`), at)
		case 6:
			add(c, `{"header":{"sender":{"id":"w","type":"CONNECTOR"},"conversationId":"conv-`+c+`"},"body":{"type":"PLAIN","markdownText":"reply"}}`, at)
		case 7:
			add(c, `{"header":{"sender":{"id":"w","type":"CONNECTOR"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"`+c+
				`"}},"body":{"type":"NOTIFICATION","notificationType":"TYPING"}}`, at)
		case 8:
			add(c, `{"header":{"sender":{"id":"w"}},"body":{"type":"PLAIN"}}`, at) // invalid
		case 9:
			add(c, text(c, fmt.Sprint("m", i), ""), time.Time{}) // no timestamp
		default:
			add(c, text(c, fmt.Sprint("m", i), ""), at.Add(time.Duration(i%2)*6*time.Minute))
		}
	}
	add("cust-far", text("cust-far", "future", ""), base.AddDate(5, 0, 0))
	add("cust-0", `{"header":{"sender":{"id":"w","type":"CONNECTOR"},"conversationId":"conv-cust-0"},"body":{"type":"DELIVERYNOTIFICATION","messageId":"x","status":"DELIVERED"}}`, base)
	return recs
}

func fastEnricher(p int, clk *clock) *Enricher {
	return NewEnricher(testTopics, "sessions", p, session.Fixed(2*time.Minute), nil, clk.Now).WithEvents(testTopics.CCM)
}

// The fast path and the repartition path give the same outputs, byte for byte (CCM messages, events,
// changelog, dead letters), for the same input: a record taken where it is is the record stage 1 would
// have written, enriched by the same table.
func TestFastPathMatchesRepartitionPath(t *testing.T) {
	input := fastInput()
	clk := &clock{now: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}

	// The repartition path: stage 1, the record written to its home partition and read back there.
	n := NewNormalizer(testTopics, 1<<20, nil)
	slow := map[int]*Enricher{}
	nextOffset := map[int]int64{}
	var viaRepartition []stream.Result
	for _, rec := range input {
		res := n.Process(rec)
		if len(res.Reject) > 0 || res.Outputs[0].Topic != testTopics.Repartition {
			viaRepartition = append(viaRepartition, res)
			continue
		}
		o := res.Outputs[0]
		p := rec.Partition // a conversation-keyed record stays where it is on both paths
		if o.HashKey != nil {
			p = kafkaedge.HomePartition(o.HashKey, fastPartitions)
		}
		if slow[p] == nil {
			slow[p] = fastEnricher(p, clk)
		}
		back := stream.Record{Topic: testTopics.Repartition, Partition: p, Offset: nextOffset[p], Key: o.Key, Value: o.Value, Headers: o.Headers, Time: o.Time}
		nextOffset[p]++
		viaRepartition = append(viaRepartition, slow[p].Process(back))
	}

	// The fast path: each partition's handler, batches of 3.
	pl := &Pipeline{home: kafkaedge.HomePartition, log: zap.NewNop()}
	handlers := map[int]*homeHandler{}
	var byPartition = map[int][]int{}
	for i, rec := range input {
		byPartition[rec.Partition] = append(byPartition[rec.Partition], i)
	}
	viaHome := make([]stream.Result, len(input))
	obs := &routes{}
	for p, idx := range byPartition {
		s := &slot{e: fastEnricher(p, clk), drained: make(chan struct{})}
		s.finishDrain()
		handlers[p] = &homeHandler{n: NewNormalizer(testTopics, 1<<20, nil), p: pl, s: s, partition: p, partitions: fastPartitions,
			repartition: testTopics.Repartition, observer: obs}
		for start := 0; start < len(idx); start += 3 {
			end := min(start+3, len(idx))
			batch := make([]stream.Record, 0, 3)
			for _, i := range idx[start:end] {
				batch = append(batch, input[i])
			}
			for j, res := range handlers[p].Process(batch) {
				viaHome[idx[start+j]] = res
			}
		}
	}
	if obs.repartitioned != 0 || obs.home == 0 {
		t.Fatalf("keyed input: %d records taken home, %d repartitioned; want all home", obs.home, obs.repartitioned)
	}
	for i := range input {
		a, b := viaRepartition[i], viaHome[i]
		if fmt.Sprint(a.Reject) != fmt.Sprint(b.Reject) || len(a.Outputs) != len(b.Outputs) {
			t.Fatalf("record %d: repartition path %v, fast path %v", i, describe(a), describe(b))
		}
		for j := range a.Outputs {
			if !sameOutput(a.Outputs[j], b.Outputs[j]) {
				t.Fatalf("record %d output %d differs:\n repartition %s\n fast        %s", i, j, describe(a), describe(b))
			}
		}
	}
}

// A record not on its home partition (the connector keys otherwise) goes through the repartition
// topic, as stage 1 sends it, and the fast path does not touch the table.
func TestFastPathSendsForeignRecordsThroughRepartition(t *testing.T) {
	clk := &clock{now: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	home := kafkaedge.HomePartition([]byte("cust-1"), fastPartitions)
	elsewhere := (home + 1) % fastPartitions
	s := &slot{e: fastEnricher(elsewhere, clk), drained: make(chan struct{})}
	s.finishDrain()
	obs := &routes{}
	h := &homeHandler{n: NewNormalizer(testTopics, 1<<20, nil), p: &Pipeline{home: kafkaedge.HomePartition, log: zap.NewNop()}, s: s,
		partition: elsewhere, partitions: fastPartitions, repartition: testTopics.Repartition, observer: obs}
	rec := stream.Record{Topic: "cim.inbound.web", Partition: elsewhere, Offset: 5, Value: []byte(text("cust-1", "hi", "")), Time: clk.now}
	got := h.Process([]stream.Record{rec})[0]
	want := NewNormalizer(testTopics, 1<<20, nil).Process(rec)
	if len(got.Outputs) != 1 || !sameOutput(got.Outputs[0], want.Outputs[0]) || got.Outputs[0].Topic != testTopics.Repartition {
		t.Fatalf("foreign record: %s, want stage 1's %s", describe(got), describe(want))
	}
	if s.e.Sessions() != 0 || obs.home != 0 || obs.repartitioned != 1 {
		t.Fatalf("table holds %d keys, routes %+v", s.e.Sessions(), obs)
	}
}

// Records taken where they are wait until the repartition records already waiting on the partition
// when the generation began were applied (a customer's older records go first).
func TestFastPathWaitsForRepartitionBacklog(t *testing.T) {
	clk := &clock{now: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	p := kafkaedge.HomePartition([]byte("cust-1"), fastPartitions)
	s := &slot{e: fastEnricher(p, clk), drained: make(chan struct{}), next: 10, target: 12}
	pl := &Pipeline{home: kafkaedge.HomePartition, log: zap.NewNop()}
	h := &homeHandler{n: NewNormalizer(testTopics, 1<<20, nil), p: pl, s: s, partition: p, partitions: fastPartitions,
		repartition: testTopics.Repartition, observer: &routes{}}
	sh := &sessionsHandler{s: s, p: pl, partition: p}
	done := make(chan []stream.Result)
	go func() {
		done <- h.Process([]stream.Record{{Topic: "cim.inbound.web", Partition: p, Offset: 0, Value: []byte(text("cust-1", "new", "")), Time: clk.now}})
	}()
	older := NewNormalizer(testTopics, 1<<20, nil).Process(stream.Record{Topic: "cim.inbound.web", Partition: 0, Offset: 3,
		Value: []byte(text("cust-1", "old", "")), Time: clk.now.Add(-time.Second)}).Outputs[0]
	select {
	case <-done:
		t.Fatal("a record was taken before the repartition backlog was applied")
	case <-time.After(100 * time.Millisecond):
	}
	sh.Process([]stream.Record{{Topic: testTopics.Repartition, Partition: p, Offset: 10, Key: older.Key, Value: older.Value, Headers: older.Headers, Time: older.Time}})
	select {
	case <-done:
		t.Fatal("taken with one backlog record still waiting")
	case <-time.After(100 * time.Millisecond):
	}
	sh.Process([]stream.Record{{Topic: testTopics.Repartition, Partition: p, Offset: 11, Key: []byte("conversation:x"),
		Value: []byte(`{"header":{"sender":{"id":"w","type":"CONNECTOR"},"conversationId":"x"},"body":{"type":"PLAIN"}}`)}})
	select {
	case res := <-done:
		if len(res[0].Outputs) == 0 || res[0].Outputs[0].Topic == testTopics.Repartition {
			t.Fatalf("record not taken where it is: %s", describe(res[0]))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still waiting after the backlog was applied")
	}
}

type routes struct{ home, repartitioned int }

func (r *routes) UnknownIntent(string)           {}
func (r *routes) Routed(home, repartitioned int) { r.home += home; r.repartitioned += repartitioned }
func describe(r stream.Result) string            { return fmt.Sprintf("%+v", r) }
func sameOutput(a, b stream.Output) bool {
	if a.Topic != b.Topic || a.Partition != b.Partition || !bytes.Equal(a.Key, b.Key) || !bytes.Equal(a.Value, b.Value) ||
		!a.Time.Equal(b.Time) || len(a.Headers) != len(b.Headers) {
		return false
	}
	for i := range a.Headers {
		if a.Headers[i].Key != b.Headers[i].Key || !bytes.Equal(a.Headers[i].Value, b.Headers[i].Value) {
			return false
		}
	}
	return true
}
