package kafkaclient

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/fetch"
	meta "github.com/segmentio/kafka-go/protocol/metadata"
)

// wireBroker answers fetches of topic "t" with one record per partition, encoded and decoded as on the
// wire (v11), so that a response fails to decode as kafka-go fails it: whole. The record of a partition
// in poison has a bit flipped in transit (its batch CRC no longer matches); the first throttled fetches
// are answered as Kafka answers a fetch over a consumer quota: no partitions, a throttle time.
type wireBroker struct {
	mu        sync.Mutex
	parts     []int32
	poison    map[int32]bool
	throttled int           // fetches still to answer throttled
	throttle  time.Duration // the throttle time they name
	fetches   [][]int32     // the partitions of each fetch request
}

func (b *wireBroker) RoundTrip(_ context.Context, _ net.Addr, req protocol.Message) (protocol.Message, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch r := req.(type) {
	case *meta.Request:
		t := meta.ResponseTopic{Name: "t"}
		for _, p := range b.parts {
			t.Partitions = append(t.Partitions, meta.ResponsePartition{PartitionIndex: p, LeaderID: 1})
		}
		return &meta.Response{Brokers: []meta.ResponseBroker{{NodeID: 1, Host: "127.0.0.1", Port: 1}}, Topics: []meta.ResponseTopic{t}}, nil
	case *fetch.Request:
		var asked []int32
		for _, t := range r.Topics {
			for _, p := range t.Partitions {
				asked = append(asked, p.Partition)
			}
		}
		b.fetches = append(b.fetches, asked)
		if b.throttled > 0 {
			b.throttled--
			return &fetch.Response{ThrottleTimeMs: int32(b.throttle.Milliseconds())}, nil
		}
		return b.encoded(r)
	}
	return nil, fmt.Errorf("unexpected %T", req)
}

func (b *wireBroker) value(p int32) []byte {
	if b.poison[p] {
		return []byte("POISON")
	}
	return []byte(fmt.Sprintf("value-of-%d", p))
}

// encoded answers r through an encode and a decode, one record per partition at its fetch offset.
func (b *wireBroker) encoded(r *fetch.Request) (protocol.Message, error) {
	resp := &fetch.Response{}
	for _, t := range r.Topics {
		rt := fetch.ResponseTopic{Topic: t.Topic}
		for _, p := range t.Partitions {
			rec := protocol.Record{Offset: p.FetchOffset, Time: time.Now(), Value: protocol.NewBytes(b.value(p.Partition))}
			rt.Partitions = append(rt.Partitions, fetch.ResponsePartition{Partition: p.Partition, HighWatermark: p.FetchOffset + 1,
				LastStableOffset: p.FetchOffset + 1, RecordSet: protocol.RecordSet{Version: 2, Records: protocol.NewRecordReader(rec)}})
		}
		resp.Topics = append(resp.Topics, rt)
	}
	var buf bytes.Buffer
	if err := protocol.WriteResponse(&buf, 11, 1, resp); err != nil {
		return nil, err
	}
	raw := buf.Bytes()
	for _, t := range r.Topics { // kafka-go writes base offset 0: put each batch at its fetch offset
		for _, p := range t.Partitions {
			if i := bytes.Index(raw, b.value(p.Partition)); i >= 67 {
				binary.BigEndian.PutUint64(raw[i-67:], uint64(p.FetchOffset))
			}
		}
	}
	if i := bytes.Index(raw, []byte("POISON")); i >= 0 {
		raw[i] ^= 0x20
	}
	_, m, err := protocol.ReadResponse(bytes.NewReader(raw), protocol.Fetch, 11)
	return m, err
}

func wireReader(c *kafka.Client, f *fetcher, partition int, offset int64) *Reader {
	ctx, cancel := context.WithCancel(context.Background())
	return &Reader{client: c, fetcher: f, topic: "t", partition: partition, minBytes: 1, maxBytes: 1 << 20,
		maxWait: 100 * time.Millisecond, timeout: time.Second, ctx: ctx, cancel: cancel, next: offset, isolation: kafka.ReadCommitted}
}

// A corrupt batch fails the decode of the whole response: the partitions it was sent with are asked
// again one by one, and only the corrupt one gets the error.
func TestFetcherOnePartitionsCorruptBatchDoesNotFailTheOthers(t *testing.T) {
	b := &wireBroker{poison: map[int32]bool{1: true}, parts: []int32{0, 1, 2}}
	c := &kafka.Client{Addr: kafka.TCP("127.0.0.1:1"), Transport: b}
	for round := range 10 {
		f := newFetcher(c, 1, 1<<20, 100*time.Millisecond, time.Second, time.Minute) // readers starting together
		res := fetchAll(f, 0, 1, 2)
		for _, p := range []int{0, 2} {
			if res[p].err != nil || res[p].p == nil || res[p].p.RecordSet.Records == nil {
				t.Errorf("round %d: healthy partition %d: %+v, want its record", round, p, res[p])
			}
		}
		if res[1].err == nil {
			t.Errorf("round %d: the corrupt partition 1 got no error: %+v", round, res[1])
		}
	}
}

// A reader beside a partition that keeps failing to decode reads on without an error, and the failing
// partition goes in requests of its own until it succeeds: it does not make the others' requests fail.
func TestReaderBesideACorruptPartitionKeepsReading(t *testing.T) {
	b := &wireBroker{poison: map[int32]bool{1: true}, parts: []int32{0, 1}}
	c := &kafka.Client{Addr: kafka.TCP("127.0.0.1:1"), Transport: b}
	f := newFetcher(c, 1, 1<<20, 100*time.Millisecond, time.Second, time.Minute)
	var wg sync.WaitGroup
	records, errs, failed := make([]int, 2), make([]int, 2), make([]int64, 2)
	for p := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := wireReader(c, f, p, 0)
			defer r.Close()
			defer func() { failed[p] = r.Stats().Errors }()
			for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				_, err := r.FetchMessage(ctx)
				cancel()
				if err != nil {
					errs[p]++
				} else {
					records[p]++
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("partition 0: %d records, %d errors, %d failed fetches; corrupt partition 1: %d records, %d errors",
		records[0], errs[0], failed[0], records[1], errs[1])
	if errs[0] > 0 || failed[0] > 0 || records[0] < 10 {
		t.Errorf("healthy partition 0: %d records, %d errors, %d failed fetches; want it read on without a failure",
			records[0], errs[0], failed[0])
	}
	if records[1] > 0 || errs[1] == 0 {
		t.Errorf("corrupt partition 1: %d records, %d errors; want errors only", records[1], errs[1])
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	shared := 0
	for _, ps := range b.fetches {
		if len(ps) > 1 {
			for _, p := range ps {
				if p == 1 {
					shared++
				}
			}
		}
	}
	if shared > 1 {
		t.Errorf("the corrupt partition went in %d requests with others, want 1 (the first)", shared)
	}
}

// A fetch over a consumer quota comes back with no partitions and a throttle time: the reader waits and
// fetches again, never failing, however many times in a row it happens; the throttle is counted.
func TestReaderWaitsOutAThrottledFetch(t *testing.T) {
	const throttle = 40 * time.Millisecond
	b := &wireBroker{parts: []int32{0}, throttled: readAttempts + 1, throttle: throttle}
	c := &kafka.Client{Addr: kafka.TCP("127.0.0.1:1"), Transport: b}
	f := newFetcher(c, 1, 1<<20, 100*time.Millisecond, time.Second, time.Minute)
	r := wireReader(c, f, 0, 5)
	defer r.Close()
	before := ThrottleTotals()["fetch"]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	began := time.Now()
	m, err := r.FetchMessage(ctx)
	took := time.Since(began)
	if err != nil || m.Offset != 5 || string(m.Value) != "value-of-0" {
		t.Fatalf("after %v: %+v, %v; want the record at offset 5", took, m, err)
	}
	if s := r.Stats(); s.Errors != 0 {
		t.Errorf("%d failed fetches counted, want 0 (throttling is not a failure)", s.Errors)
	}
	if want := time.Duration(readAttempts+1) * throttle; took < want {
		t.Errorf("read after %v, want at least %v (each throttle waited out)", took, want)
	}
	if after := ThrottleTotals()["fetch"]; after.Responses-before.Responses < readAttempts+1 {
		t.Errorf("%d throttled fetch responses counted, want %d", after.Responses-before.Responses, readAttempts+1)
	}
}

// A partition added to a topic after its leaders were looked up is found at once, not after the cache
// expires (the metadata TTL).
func TestFetcherFindsAPartitionAddedAfterTheLookup(t *testing.T) {
	b := &fakeBrokers{leaders: map[int32]int32{0: 1}}
	f := newFakeFetcher(b)
	fetchAll(f, 0)
	b.mu.Lock()
	b.leaders[1] = 1
	b.mu.Unlock()
	for i := range 3 {
		if res := fetchAll(f, 1)[0]; res.err != nil {
			t.Errorf("fetch %d of the new partition: %v", i, res.err)
		}
	}
	if res := fetchAll(f, 9)[0]; res.err == nil {
		t.Errorf("a partition the topic does not have: %+v, want an error", res)
	}
	if b.metadata != 3 {
		t.Errorf("%d metadata look-ups, want 3 (the first, the new partition, the missing one)", b.metadata)
	}
}

// Partitions whose readers stopped waiting are not looked up again when their request is refused for
// routing: nobody would get the answer.
func TestFetcherReroutesNoWithdrawnPartition(t *testing.T) {
	b := &fakeBrokers{leaders: map[int32]int32{0: 1, 1: 1}}
	f := newFakeFetcher(b)
	var wants []*want
	for p := range 2 {
		wants = append(wants, &want{tp: topicPartition{"t", p}, isolation: kafka.ReadCommitted, res: make(chan partFetch, 1), gone: true})
	}
	f.reroute(wants, fetch.NewError(fmt.Errorf("mismatching leaders")))
	if b.metadata != 0 || len(f.queues) != 0 {
		t.Errorf("%d metadata look-ups, %d queues; want none for withdrawn partitions", b.metadata, len(f.queues))
	}
}
