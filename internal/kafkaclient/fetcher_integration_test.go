package kafkaclient_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

// polled is what one reader read while the test ran: records and the first error.
type polled struct {
	mu   sync.Mutex
	recs []kafka.Message
	err  error
}

func (p *polled) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.recs)
}

// poll reads r in the background until ctx ends; stop waits for it.
func poll(ctx context.Context, r *kafkaclient.Reader) (*polled, func()) {
	out := &polled{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			m, err := r.FetchMessage(ctx)
			out.mu.Lock()
			if err == nil {
				out.recs = append(out.recs, m)
			} else if out.err == nil && ctx.Err() == nil {
				out.err = err
			}
			out.mu.Unlock()
		}
	}()
	return out, func() { <-done }
}

func readers(t *testing.T, f *kafkaclient.Factory, topics []string, partitions int, offset int64) []*kafkaclient.Reader {
	t.Helper()
	var rs []*kafkaclient.Reader
	for _, topic := range topics {
		for p := range partitions {
			r, err := f.PartitionReader(topic, p, offset)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = r.Close() })
			rs = append(rs, r)
		}
	}
	return rs
}

// waitFor polls cond every 10 ms for at most limit.
func waitFor(limit time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// Six idle readers on one broker (3 topics × 2 partitions) long-poll together: about one fetch request
// per consumer.maxWait round for all of them, not one per reader (one per reader per round before).
func TestIntegrationFetchOneRequestPerBrokerRound(t *testing.T) {
	f := kafkatest.Factory(t)
	topics := []string{kafkatest.Topic(t, "round-a", 2), kafkatest.Topic(t, "round-b", 2), kafkatest.Topic(t, "round-c", 2)}
	rs := readers(t, f, topics, 2, 0)
	ctx, cancel := context.WithCancel(context.Background())
	var polls []*polled
	var stops []func()
	for _, r := range rs {
		p, stop := poll(ctx, r)
		polls, stops = append(polls, p), append(stops, stop)
	}
	time.Sleep(500 * time.Millisecond) // every reader in its long poll
	before := kafkaclient.RequestTotals()["Fetch"]
	const window = 2 * time.Second
	time.Sleep(window)
	requests := kafkaclient.RequestTotals()["Fetch"] - before
	rounds := int64(window / kafkatest.Config(t).Kafka.Consumer.MaxWait)

	// Records still reach every reader.
	w := f.Writer("")
	defer w.Close()
	var msgs []kafka.Message
	for _, topic := range topics {
		for k := range 20 {
			msgs = append(msgs, kafka.Message{Topic: topic, Key: []byte(fmt.Sprint("k", k)), Value: []byte("v")})
		}
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	total := func() (n int) {
		for _, p := range polls {
			n += p.count()
		}
		return n
	}
	ok := waitFor(10*time.Second, func() bool { return total() == len(msgs) })
	cancel()
	for _, stop := range stops {
		stop()
	}
	t.Logf("%d fetch requests in %d rounds of maxWait for %d idle readers", requests, rounds, len(rs))
	// Requests that went out at different moments keep long-polling apart (two per round at times), so the
	// bound is twice the rounds: one request per reader and round (what each reader alone sends) is six times.
	if requests > rounds*2 {
		t.Errorf("%d fetch requests in %v for %d idle readers on one broker, want at most two per round (%d rounds)", requests, window, len(rs), rounds)
	}
	if !ok {
		t.Errorf("read %d records, want %d", total(), len(msgs))
	}
	for i, p := range polls {
		if p.err != nil {
			t.Errorf("reader %d: %v", i, p.err)
		}
	}
}

// A partition whose fetch fails (an offset past the end: OFFSET_OUT_OF_RANGE on every attempt) shares
// requests with healthy partitions: they read every record, without an error, while it fails.
func TestIntegrationFetchPartitionErrorIsolated(t *testing.T) {
	f := kafkatest.Factory(t)
	topic := kafkatest.Topic(t, "isolated", 3)
	rs := readers(t, f, []string{topic}, 2, 0)
	bad, err := f.PartitionReader(topic, 2, 1000) // the partition is empty: 1000 is past its end
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	badErr := make(chan error, 1)
	go func() {
		_, err := bad.FetchMessage(ctx)
		badErr <- err
	}()
	var polls []*polled
	var stops []func()
	for _, r := range rs {
		p, stop := poll(ctx, r)
		polls, stops = append(polls, p), append(stops, stop)
	}
	w := f.Writer(topic)
	defer w.Close()
	w.Balancer = kafka.BalancerFunc(func(m kafka.Message, _ ...int) int { return m.Partition }) // partitions 0 and 1 only
	start := time.Now()
	const n = 200
	for i := range n { // while the bad partition fails and backs off
		if err := w.WriteMessages(ctx, kafka.Message{Partition: i % 2, Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	got := func() int { return polls[0].count() + polls[1].count() }
	ok := waitFor(10*time.Second, func() bool { return got() >= n })
	took := time.Since(start)
	select {
	case err := <-badErr:
		if !errors.Is(err, kafka.OffsetOutOfRange) {
			t.Errorf("reader past the end: %v, want OFFSET_OUT_OF_RANGE after its third failure", err)
		}
	case <-ctx.Done():
		t.Errorf("reader past the end returned no error")
	}
	cancel()
	for _, stop := range stops {
		stop()
	}
	t.Logf("healthy partitions read %d records in %v", got(), took)
	if !ok {
		t.Fatalf("healthy partitions read %d records, want %d", got(), n)
	}
	for i, p := range polls {
		if p.err != nil {
			t.Errorf("healthy reader %d failed: %v", i, p.err)
		}
	}
}

// A deleted topic's reader fails on its own; readers of another topic on the same broker go on.
func TestIntegrationFetchDeletedTopicIsolated(t *testing.T) {
	f := kafkatest.Factory(t)
	keep := kafkatest.Topic(t, "keep", 2)
	gone := kafkatest.Topic(t, "gone", 1)
	rs := readers(t, f, []string{keep, gone}, 2, 0)[:3] // keep/0, keep/1, gone/0
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var polls []*polled
	var stops []func()
	for _, r := range rs {
		p, stop := poll(ctx, r)
		polls, stops = append(polls, p), append(stops, stop)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := f.Client().DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{gone}}); err != nil {
		t.Fatal(err)
	}
	failed := waitFor(15*time.Second, func() bool {
		polls[2].mu.Lock()
		defer polls[2].mu.Unlock()
		return polls[2].err != nil
	})
	w := f.Writer(keep)
	defer w.Close()
	const n = 50
	for i := range n {
		if err := w.WriteMessages(ctx, kafka.Message{Key: []byte(fmt.Sprint("k", i)), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	ok := waitFor(10*time.Second, func() bool { return polls[0].count()+polls[1].count() >= n })
	cancel()
	for _, stop := range stops {
		stop()
	}
	if !failed {
		t.Errorf("the deleted topic's reader returned no error")
	}
	if !ok {
		t.Errorf("the other topic's readers read %d records, want %d", polls[0].count()+polls[1].count(), n)
	}
	for i, p := range polls[:2] {
		if p.err != nil {
			t.Errorf("reader %d of the topic kept: %v", i, p.err)
		}
	}
}

// A reader closed while its partition is in a request in flight: Close returns promptly, the other
// readers of that request are not hurt, and a new reader of the partition reads it from the start.
func TestIntegrationFetchReaderClosedInFlight(t *testing.T) {
	f := kafkatest.Factory(t)
	topic := kafkatest.Topic(t, "closed", 3)
	rs := readers(t, f, []string{topic}, 3, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var polls []*polled
	var stops []func()
	for _, r := range rs[1:] {
		p, stop := poll(ctx, r)
		polls, stops = append(polls, p), append(stops, stop)
	}
	short, shortCancel := context.WithTimeout(ctx, 20*time.Millisecond)
	if _, err := rs[0].FetchMessage(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("empty partition: %v, want a deadline", err)
	}
	shortCancel()
	start := time.Now()
	_ = rs[0].Close() // its fetch is in flight, long-polling with the others
	if took := time.Since(start); took > time.Second {
		t.Errorf("Close took %v with a fetch in flight", took)
	}
	if _, err := rs[0].FetchMessage(ctx); err == nil {
		t.Errorf("a closed reader returned a record")
	}
	w := f.Writer(topic)
	defer w.Close()
	const n = 60
	for i := range n {
		if err := w.WriteMessages(ctx, kafka.Message{Key: []byte(fmt.Sprint("k", i)), Value: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	again, err := f.PartitionReader(topic, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	p0, stop := poll(ctx, again)
	polls, stops = append(polls, p0), append(stops, stop)
	ok := waitFor(10*time.Second, func() bool { return polls[0].count()+polls[1].count()+polls[2].count() >= n })
	cancel()
	for _, stop := range stops {
		stop()
	}
	if !ok {
		t.Errorf("read %d records after a reader closed in flight, want %d", polls[0].count()+polls[1].count()+polls[2].count(), n)
	}
	for i, m := range p0.recs {
		if m.Offset != int64(i) {
			t.Fatalf("new reader of the closed partition: record %d at offset %d", i, m.Offset)
		}
	}
	for i, p := range polls {
		if p.err != nil {
			t.Errorf("reader %d: %v", i, p.err)
		}
	}
}

// read_committed over several partitions read together: an aborted transaction on one partition hides
// its records only; committed ones on the others come through; no marker is ever a record, and each
// reader's Offset goes past the markers.
func TestIntegrationFetchReadCommittedAcrossPartitions(t *testing.T) {
	f := kafkatest.Factory(t)
	topic := kafkatest.Topic(t, "txn-multi", 3)
	p := kafkatest.NewTxnProducer(t)
	p.Begin()
	p.Send(topic, 0, "k", "c0")
	p.Send(topic, 2, "k", "c2")
	p.Commit()
	p.Begin()
	p.Send(topic, 1, "k", "a1")
	p.Send(topic, 1, "k", "a1b")
	p.Abort()
	p.Begin()
	p.Send(topic, 0, "k", "d0")
	p.Send(topic, 1, "k", "d1")
	p.Send(topic, 2, "k", "d2")
	p.Commit()
	// Offsets: p0 0 c0, 1 commit, 2 d0, 3 commit; p1 0 a1, 1 a1b, 2 abort, 3 d1, 4 commit; p2 as p0.
	ends := []int64{4, 5, 4}
	want := [][]string{{"c0", "d0"}, {"d1"}, {"c2", "d2"}}
	rs := readers(t, f, []string{topic}, 3, kafka.FirstOffset)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	got := make([][]string, 3)
	errs := make([]error, 3)
	for i, r := range rs {
		wg.Add(1)
		go func() { // concurrently, so the partitions share requests
			defer wg.Done()
			for {
				m, err := r.FetchBefore(ctx, ends[i])
				if err != nil {
					if !errors.Is(err, io.EOF) {
						errs[i] = err
					}
					return
				}
				got[i] = append(got[i], string(m.Value))
			}
		}()
	}
	wg.Wait()
	for i := range rs {
		if errs[i] != nil {
			t.Errorf("partition %d: %v", i, errs[i])
		}
		if fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
			t.Errorf("partition %d read %q, want %q", i, got[i], want[i])
		}
		if rs[i].Offset() != ends[i] {
			t.Errorf("partition %d at %d, want %d (past the commit marker)", i, rs[i].Offset(), ends[i])
		}
	}
}
