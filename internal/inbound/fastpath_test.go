package inbound

import (
	"bytes"
	"context"
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
			add(c, `{"header":{"sender":{"id":"w","type":"CONNECTOR","senderName":"W"},"conversationId":"conv-`+c+`"},"body":{"type":"PLAIN","markdownText":"reply"}}`, at)
		case 7:
			add(c, `{"header":{"sender":{"id":"w","type":"CONNECTOR","senderName":"W"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"`+c+
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
	add("cust-0", `{"header":{"sender":{"id":"w","type":"CONNECTOR","senderName":"W"},"conversationId":"conv-cust-0"},"body":{"type":"DELIVERYNOTIFICATION","messageId":"x","status":"DELIVERED"}}`, base)
	return recs
}

func fastEnricher(p int, clk *clock) *Enricher {
	return NewEnricher(testTopics, "sessions", p, session.Fixed(2*time.Minute), nil, clk.Now).WithEvents(testTopics.CCM)
}

// homePartitionOf is where the repartition topic puts a stage-1 output: by HashKey, else by key.
func homePartitionOf(o stream.Output) int {
	if o.HashKey != nil {
		return kafkaedge.HomePartition(o.HashKey, fastPartitions)
	}
	return kafkaedge.HomePartition(o.Key, fastPartitions)
}

// The fast path and the repartition path give the same outputs, byte for byte (CCM messages, events,
// changelog, dead letters), for the same input: a record taken where it is is the record stage 1 would
// have written, enriched by the same table. Replies keyed by conversation are not on their home
// partition here: they go through the repartition topic on both paths.
func TestFastPathMatchesRepartitionPath(t *testing.T) {
	input := fastInput()
	clk := &clock{now: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}

	// The repartition path: stage 1, the record written to its home partition and read back there.
	n := NewNormalizer(testTopics, 1<<20, nil)
	slow := map[int]*Enricher{}
	var viaRepartition []stream.Result
	for _, rec := range input {
		res := n.Process(rec)
		if len(res.Reject) > 0 || res.Outputs[0].Topic != testTopics.Repartition {
			viaRepartition = append(viaRepartition, res)
			continue
		}
		o := res.Outputs[0]
		p := homePartitionOf(o)
		if slow[p] == nil {
			slow[p] = fastEnricher(p, clk)
		}
		back := stream.Record{Topic: testTopics.Repartition, Partition: p, Offset: 7, Key: o.Key, Value: o.Value, Headers: o.Headers, Time: o.Time}
		viaRepartition = append(viaRepartition, slow[p].Process(back))
	}

	// The fast path: each channel partition's handler, sharing its partition's table with the
	// repartition handler of the same number, which applies what the fast path sends through.
	pl := &Pipeline{home: kafkaedge.HomePartition, log: zap.NewNop()}
	handlers := map[int]*homeHandler{}
	repartitionHandlers := map[int]*repartitionHandler{}
	obs := &routes{}
	for p := range fastPartitions {
		s := newSlot()
		s.e = fastEnricher(p, clk)
		handlers[p] = &homeHandler{slotUser: slotUser{p: pl, s: s, partition: p}, n: NewNormalizer(testTopics, 1<<20, obs), partitions: fastPartitions,
			repartition: testTopics.Repartition, fast: true}
		repartitionHandlers[p] = &repartitionHandler{slotUser{s: s, p: pl, partition: p}}
	}
	viaHome := make([]stream.Result, len(input))
	for i, rec := range input {
		res := handlers[rec.Partition].Process([]stream.Record{rec})[0]
		if len(res.Reject) == 0 && len(res.Outputs) == 1 && res.Outputs[0].Topic == testTopics.Repartition {
			o := res.Outputs[0]
			res = repartitionHandlers[homePartitionOf(o)].Process([]stream.Record{{Topic: testTopics.Repartition,
				Partition: homePartitionOf(o), Offset: 7, Key: o.Key, Value: o.Value, Headers: o.Headers, Time: o.Time}})[0]
		}
		viaHome[i] = res
	}
	if obs.home == 0 || obs.repartitioned == 0 {
		t.Fatalf("%d records taken home, %d repartitioned: the input must exercise both", obs.home, obs.repartitioned)
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
	s := newSlot()
	s.e = fastEnricher(elsewhere, clk)
	obs := &routes{}
	h := &homeHandler{slotUser: slotUser{p: &Pipeline{home: kafkaedge.HomePartition, log: zap.NewNop()}, s: s, partition: elsewhere},
		n: NewNormalizer(testTopics, 1<<20, obs), partitions: fastPartitions, repartition: testTopics.Repartition, fast: true}
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

// Records on their home partition go through the repartition topic until the repartition records that
// waited when the generation began and those the handler itself sent there are applied; only then are
// they taken where they are, so none of a customer's records is overtaken. Records of other channel
// partitions flowing into the repartition topic meanwhile do not hold the fast path off.
func TestFastPathWaitsForRepartitionBacklog(t *testing.T) {
	clk := &clock{now: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	p := kafkaedge.HomePartition([]byte("cust-1"), fastPartitions)
	s := newSlot()
	s.e, s.next, s.target = fastEnricher(p, clk), 10, 12
	pl := &Pipeline{home: kafkaedge.HomePartition, log: zap.NewNop()}
	h := &homeHandler{slotUser: slotUser{p: pl, s: s, partition: p}, n: NewNormalizer(testTopics, 1<<20, &routes{}), source: fmt.Sprint("cim.inbound.web/", p),
		partitions: fastPartitions, repartition: testTopics.Repartition, routed: -1}
	sh := &repartitionHandler{slotUser{s: s, p: pl, partition: p}}
	newer := func(i int) stream.Record {
		return stream.Record{Topic: "cim.inbound.web", Partition: p, Offset: int64(i), Value: []byte(text("cust-1", fmt.Sprint("new", i), "")), Time: clk.now}
	}
	process := func(rec stream.Record) stream.Result {
		h.lock(context.Background(), []stream.Record{rec})
		defer h.unlock()
		return h.Process([]stream.Record{rec})[0]
	}
	taken := func(res stream.Result) bool {
		return len(res.Outputs) > 0 && res.Outputs[0].Topic != testTopics.Repartition
	}
	repartitioned := func(offset int64, res stream.Result) stream.Record {
		o := res.Outputs[0]
		return stream.Record{Topic: testTopics.Repartition, Partition: p, Offset: offset, Key: o.Key, Value: o.Value, Headers: o.Headers, Time: o.Time}
	}
	older := NewNormalizer(testTopics, 1<<20, nil).Process(stream.Record{Topic: "cim.inbound.web", Partition: 0, Offset: 3,
		Value: []byte(text("cust-1", "old", "")), Time: clk.now.Add(-time.Second)})

	// Backlog 10..11 waiting: the first newer record goes behind it (it lands at 12), after a bounded wait.
	began := time.Now()
	first := process(newer(0))
	if taken(first) {
		t.Fatal("a record was taken before the repartition backlog was applied")
	}
	if waited := time.Since(began); waited < homeWait/2 {
		t.Fatalf("routed after %v: the handler must wait for the backlog first", waited)
	}
	sh.Process([]stream.Record{repartitioned(10, older), repartitioned(11, older)})
	// The backlog is applied, but the record the handler sent (12) is not: the next one waits for it and
	// is taken as soon as the repartition handler applied it.
	done := make(chan stream.Result)
	go func() { done <- process(newer(1)) }()
	select {
	case <-done:
		t.Fatal("processed while the handler's own repartitioned record was not applied")
	case <-time.After(homeWait / 4):
	}
	sh.Process([]stream.Record{repartitioned(12, first)})
	select {
	case second := <-done:
		if !taken(second) {
			t.Fatalf("everything applied, yet not taken where it is: %s", describe(second))
		}
	case <-time.After(homeWait / 2):
		t.Fatal("not woken when the repartition handler applied the record it waited for")
	}
	if !h.fast {
		t.Fatal("the handler must stay on the fast path for the generation")
	}
}

// Steady traffic from other channel partitions into the repartition partition does not hold the fast
// path off: only the backlog of the generation's start and the handler's own records are waited for.
func TestFastPathEngagesUnderForeignTraffic(t *testing.T) {
	clk := &clock{now: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	p := kafkaedge.HomePartition([]byte("cust-1"), fastPartitions)
	s := newSlot()
	s.e = fastEnricher(p, clk)
	pl := &Pipeline{home: kafkaedge.HomePartition, log: zap.NewNop()}
	h := &homeHandler{slotUser: slotUser{p: pl, s: s, partition: p}, n: NewNormalizer(testTopics, 1<<20, &routes{}), source: fmt.Sprint("cim.inbound.web/", p),
		partitions: fastPartitions, repartition: testTopics.Repartition, routed: -1}
	sh := &repartitionHandler{slotUser{s: s, p: pl, partition: p}}
	n := NewNormalizer(testTopics, 1<<20, nil)
	for i := range 50 {
		foreign := n.Process(stream.Record{Topic: "cim.inbound.sms", Partition: (p + 1) % fastPartitions, Offset: int64(i),
			Value: []byte(text("cust-1", fmt.Sprint("sms", i), "")), Time: clk.now}).Outputs[0]
		sh.Process([]stream.Record{{Topic: testTopics.Repartition, Partition: p, Offset: int64(i), Key: foreign.Key, Value: foreign.Value, Headers: foreign.Headers}})
		h.lock(context.Background(), []stream.Record{{}})
		res := h.Process([]stream.Record{{Topic: "cim.inbound.web", Partition: p, Offset: int64(i), Value: []byte(text("cust-1", fmt.Sprint("web", i), "")), Time: clk.now}})[0]
		h.unlock()
		if len(res.Outputs) == 0 || res.Outputs[0].Topic == testTopics.Repartition {
			t.Fatalf("record %d sent through the repartition topic with no backlog of its own", i)
		}
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

// Lock waits for readiness only with records in hand, and no longer than the partition is held; a record
// replayed from the dead-letter topic (its source headers name whatever was dead-lettered) does not make
// the handler ready.
func TestFastPathWaitIsBounded(t *testing.T) {
	clk := &clock{now: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	p := kafkaedge.HomePartition([]byte("cust-1"), fastPartitions)
	s := newSlot()
	s.e, s.next, s.target = fastEnricher(p, clk), 0, 5
	h := &homeHandler{slotUser: slotUser{p: &Pipeline{home: kafkaedge.HomePartition, log: zap.NewNop()}, s: s, partition: p},
		n: NewNormalizer(testTopics, 1<<20, &routes{}), source: fmt.Sprint("cim.inbound.web/", p), partitions: fastPartitions, repartition: testTopics.Repartition,
		routed: 3}
	began := time.Now()
	h.lock(context.Background(), nil)
	h.unlock()
	if took := time.Since(began); took > homeWait/2 {
		t.Fatalf("an empty batch waited %v", took)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	began = time.Now()
	h.lock(ctx, []stream.Record{{}})
	h.unlock()
	if took := time.Since(began); took > homeWait/2 {
		t.Fatalf("the wait outlived the partition by %v", took)
	}
	s.mu.Lock()
	s.next = 5
	s.applied(stream.Record{Offset: 5, Headers: []stream.Header{{Key: stream.HeaderSourceTopic, Value: []byte("cim.inbound.web")},
		{Key: stream.HeaderSourcePartition, Value: []byte(fmt.Sprint(p))}, {Key: stream.HeaderSourceOffset, Value: []byte("99")},
		{Key: stream.HeaderReplayOf, Value: []byte("cimstream.dlq/0@7")}}})
	ready := h.readyLocked()
	s.mu.Unlock()
	if ready {
		t.Fatal("a replayed record's source offset made the handler ready while its own record 3 waits")
	}
}
