package kafkaclient

import (
	"context"
	"fmt"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/fetch"
	meta "github.com/segmentio/kafka-go/protocol/metadata"
)

// fakeBrokers answers metadata from leaders and fetches as kafka-go's transport routes them: refused
// with "mismatching leaders" when the partitions of one request have different leaders.
type fakeBrokers struct {
	mu       sync.Mutex
	leaders  map[int32]int32 // partition of topic "t" → leader (1 or 2)
	errors   map[int32]int16 // partition → error code of its fetch answer
	metadata int
	fetches  []fakeFetch // the requests the brokers got
	refused  int
	hold     map[int32]chan struct{} // a request for the partition waits until closed
}

type fakeFetch struct {
	leader     int32
	partitions []int32
}

func (b *fakeBrokers) RoundTrip(_ context.Context, _ net.Addr, req protocol.Message) (protocol.Message, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch r := req.(type) {
	case *meta.Request:
		b.metadata++
		t := meta.ResponseTopic{Name: "t"}
		for p, l := range b.leaders {
			t.Partitions = append(t.Partitions, meta.ResponsePartition{PartitionIndex: p, LeaderID: l})
		}
		return &meta.Response{Brokers: []meta.ResponseBroker{{NodeID: 1, Host: "127.0.0.1", Port: 1}, {NodeID: 2, Host: "127.0.0.1", Port: 2}},
			Topics: []meta.ResponseTopic{t}}, nil
	case *fetch.Request:
		for _, t := range r.Topics {
			for _, p := range t.Partitions {
				if hold := b.hold[p.Partition]; hold != nil { // a long poll of an idle partition
					b.mu.Unlock()
					<-hold
					b.mu.Lock()
				}
			}
		}
		f := fakeFetch{leader: -1}
		resp := &fetch.Response{}
		for _, t := range r.Topics {
			rt := fetch.ResponseTopic{Topic: t.Topic}
			for _, p := range t.Partitions {
				l := b.leaders[p.Partition]
				if f.leader >= 0 && l != f.leader {
					b.refused++
					return nil, fetch.NewError(fmt.Errorf("mismatching leaders (%d!=%d)", l, f.leader))
				}
				f.leader = l
				f.partitions = append(f.partitions, p.Partition)
				rt.Partitions = append(rt.Partitions, fetch.ResponsePartition{Partition: p.Partition, ErrorCode: b.errors[p.Partition],
					HighWatermark: p.FetchOffset, LastStableOffset: p.FetchOffset})
			}
			resp.Topics = append(resp.Topics, rt)
		}
		sort.Slice(f.partitions, func(i, j int) bool { return f.partitions[i] < f.partitions[j] })
		b.fetches = append(b.fetches, f)
		return resp, nil
	}
	return nil, fmt.Errorf("unexpected %T", req)
}

func newFakeFetcher(b *fakeBrokers) *fetcher {
	c := &kafka.Client{Addr: kafka.TCP("127.0.0.1:1"), Transport: b}
	return newFetcher(c, 1, 1<<20, 100*time.Millisecond, time.Second, time.Minute)
}

// fetchAll asks for partitions at once, as readers draining together do, and returns their answers.
func fetchAll(f *fetcher, partitions ...int) []partFetch {
	out := make([]partFetch, len(partitions))
	var wg sync.WaitGroup
	for i, p := range partitions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			out[i] = f.fetch(ctx, topicPartition{"t", p}, 7, kafka.ReadCommitted)
		}()
	}
	wg.Wait()
	return out
}

func TestFetcherOneRequestPerLeader(t *testing.T) {
	b := &fakeBrokers{leaders: map[int32]int32{0: 1, 1: 2, 2: 1, 3: 2}}
	f := newFakeFetcher(b)
	for round := range 3 {
		b.mu.Lock()
		b.fetches = nil
		b.mu.Unlock()
		for i, res := range fetchAll(f, 0, 1, 2, 3) {
			if res.err != nil || res.p == nil || res.p.Partition != int32(i) {
				t.Fatalf("round %d, partition %d: %+v", round, i, res)
			}
		}
		b.mu.Lock()
		got := fmt.Sprint(b.fetches)
		b.mu.Unlock()
		if got != "[{1 [0 2]} {2 [1 3]}]" && got != "[{2 [1 3]} {1 [0 2]}]" {
			t.Errorf("round %d: requests %s, want one per leader: {1 [0 2]} and {2 [1 3]}", round, got)
		}
	}
	if b.metadata != 1 {
		t.Errorf("%d metadata look-ups, want 1 (leaders cached for the metadata TTL)", b.metadata)
	}
}

// Leaders moved after the fetcher cached them: the transport refuses the request (mismatching leaders),
// the partitions are looked up again and each goes to its new leader; nobody sees an error.
func TestFetcherRoutesAgainOnMismatchingLeaders(t *testing.T) {
	b := &fakeBrokers{leaders: map[int32]int32{0: 1, 1: 1}}
	f := newFakeFetcher(b)
	fetchAll(f, 0, 1)
	b.mu.Lock()
	b.leaders[1] = 2
	b.fetches = nil
	b.mu.Unlock()
	for i, res := range fetchAll(f, 0, 1) {
		if res.err != nil {
			t.Errorf("partition %d: %v", i, res.err)
		}
	}
	if b.refused != 1 || fmt.Sprint(b.fetches) != "[{1 [0]} {2 [1]}]" && fmt.Sprint(b.fetches) != "[{2 [1]} {1 [0]}]" {
		t.Errorf("%d refused, then requests %v; want 1 refused, then one per new leader", b.refused, b.fetches)
	}
}

// One partition's error answer reaches that partition only, and makes its leaders looked up again.
func TestFetcherPartitionErrorIsItsOwn(t *testing.T) {
	b := &fakeBrokers{leaders: map[int32]int32{0: 1, 1: 1}, errors: map[int32]int16{1: int16(kafka.NotLeaderForPartition)}}
	f := newFakeFetcher(b)
	res := fetchAll(f, 0, 1)
	if res[0].err != nil || res[0].p.ErrorCode != 0 {
		t.Errorf("healthy partition: %+v", res[0])
	}
	if res[1].p == nil || res[1].p.ErrorCode != int16(kafka.NotLeaderForPartition) {
		t.Errorf("partition with the error: %+v, want its NOT_LEADER answer", res[1])
	}
	fetchAll(f, 0)
	if b.metadata != 2 {
		t.Errorf("%d metadata look-ups, want 2 (again after NOT_LEADER)", b.metadata)
	}
}

// A reader that stops waiting before its partition was sent leaves the request.
func TestFetcherWithdrawnPartitionLeavesTheRequest(t *testing.T) {
	b := &fakeBrokers{leaders: map[int32]int32{0: 1, 1: 1}}
	f := newFakeFetcher(b)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if res := f.fetch(ctx, topicPartition{"t", 1}, 7, kafka.ReadCommitted); res.err == nil {
		t.Fatalf("withdrawn fetch answered %+v", res)
	}
	fetchAll(f, 0)
	time.Sleep(10 * time.Millisecond)
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.fetches {
		for _, p := range r.partitions {
			if p == 1 {
				t.Errorf("requests %v hold the withdrawn partition 1", b.fetches)
			}
		}
	}
}

// A partition that gets ready while a request long-polls idle partitions is sent at once in a request
// of its own: it does not wait for the long poll to come back (up to maxWait).
func TestFetcherReadyPartitionDoesNotWaitForALongPoll(t *testing.T) {
	release := make(chan struct{})
	b := &fakeBrokers{leaders: map[int32]int32{0: 1, 1: 1}, hold: map[int32]chan struct{}{0: release}}
	f := newFakeFetcher(b)
	polled := make(chan partFetch, 1)
	go func() { polled <- fetchAll(f, 0)[0] }()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) { // partition 0 in flight
		f.mu.Lock()
		q := f.queues[fetchKey{1, kafka.ReadCommitted}]
		out := q != nil && q.inflight == 1 && time.Since(q.lastSend) > 2*fetchYoung
		f.mu.Unlock()
		if out || time.Now().After(deadline) {
			break
		}
	}
	ready := fetchAll(f, 1)[0] // would wait for partition 0's response if it had to share it
	select {
	case <-polled:
		t.Fatalf("the long poll came back first")
	default:
	}
	if ready.err != nil || ready.p == nil || ready.p.Partition != 1 {
		t.Errorf("ready partition: %+v", ready)
	}
	close(release)
	if res := <-polled; res.err != nil {
		t.Errorf("long-polled partition: %v", res.err)
	}
}
