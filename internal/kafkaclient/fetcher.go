package kafkaclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/fetch"
)

// The readers of one Factory fetch through one fetcher, as the Java consumer does: the partitions whose
// readers need data are grouped by leader broker (and isolation level) and sent in one fetch request per
// group, so a process reading 30 partitions of one broker sends one request per round, not 30. Each
// partition still gets at most kafka.consumer.maxBytes in a response and is fetched again only once its
// reader handed over every record, so what is held in memory is what the readers held alone.
//
// Latency: with minBytes 1 a request returns as soon as one of its partitions has data, but a request
// long-polling idle partitions can stay out for maxWait (100 ms). A partition that becomes ready while
// every request in flight is older than fetchYoung goes in a new request of its own, so a ready
// partition waits a few milliseconds at most, never for an idle long poll. While a request to a broker
// is in flight the next goes out no sooner than fetchYoung after it, so however the partitions get
// ready, about maxWait/fetchYoung requests are in flight per broker at worst (one per partition before),
// and one or two as measured at 1,000 msg/s over 6 and 18 partitions. There is no cap on purpose:
// partitions waiting behind a cap would wait for an idle long poll, up to maxWait.
const (
	fetchGather   = 2 * time.Millisecond
	fetchYoung    = 3 * time.Millisecond
	fetchReroutes = 3 // routing retries of a partition after the broker's metadata changed
)

type fetchKey struct {
	leader    int
	isolation kafka.IsolationLevel
}

type topicPartition struct {
	topic     string
	partition int
}

// want is one reader's fetch of one partition, waiting for its part of a response.
type want struct {
	tp        topicPartition
	offset    int64
	isolation kafka.IsolationLevel
	key       fetchKey
	since     time.Time
	reroutes  int
	res       chan partFetch // buffered: the fetcher never blocks on a reader
	gone      bool           // the reader stopped waiting (under fetcher.mu)
}

// partFetch is a partition's part of a fetch response, or why there is none.
type partFetch struct {
	p       *fetch.ResponsePartition
	err     error
	timeout bool
}

// fetchQueue is one broker's (and isolation level's) pending partitions and requests in flight.
type fetchQueue struct {
	pending  []*want
	inflight int
	started  bool                    // a request was sent: the readers have started
	lastSend time.Time               // when the youngest request went out
	awaited  map[topicPartition]bool // came back in a response, not asked for again yet
	armed    bool                    // timer will look at the queue again at armedAt
	armedAt  time.Time
	timer    *time.Timer
}

type fetcher struct {
	client   *kafka.Client
	minBytes int
	maxBytes int
	maxWait  time.Duration
	timeout  time.Duration
	ttl      time.Duration

	lookupMu sync.Mutex
	mu       sync.Mutex
	queues   map[fetchKey]*fetchQueue
	starved  map[topicPartition]bool // left empty though data was there: first in the next request
	alone    map[topicPartition]bool // in a request that failed whole: goes alone until a fetch decodes
	leaders  map[string]topicLeaders
}

type topicLeaders struct {
	at      time.Time
	leaders map[int]int // partition → leader broker id
}

func newFetcher(client *kafka.Client, minBytes, maxBytes int, maxWait, timeout, ttl time.Duration) *fetcher {
	return &fetcher{client: client, minBytes: minBytes, maxBytes: maxBytes, maxWait: maxWait, timeout: timeout, ttl: ttl,
		queues: map[fetchKey]*fetchQueue{}, starved: map[topicPartition]bool{}, alone: map[topicPartition]bool{}, leaders: map[string]topicLeaders{}}
}

// fetch waits for topic/partition's part of the next fetch request to its leader, until ctx ends.
func (f *fetcher) fetch(ctx context.Context, tp topicPartition, offset int64, isolation kafka.IsolationLevel) partFetch {
	leader, err := f.leader(ctx, tp)
	if err != nil {
		return partFetch{err: err}
	}
	w := &want{tp: tp, offset: offset, isolation: isolation, key: fetchKey{leader, isolation}, since: time.Now(),
		res: make(chan partFetch, 1)}
	f.enqueue(w)
	select {
	case res := <-w.res:
		return res
	case <-ctx.Done():
		f.withdraw(w)
		return partFetch{err: ctx.Err()}
	}
}

// leader is the partition's leader as the shared client's metadata cache has it: the transport routes a
// fetch request by that cache and refuses one whose partitions it finds led by different brokers. A
// partition missing from the cached leaders may have been added since: the topic is looked up again.
func (f *fetcher) leader(ctx context.Context, tp topicPartition) (int, error) {
	f.mu.Lock()
	l, cached := f.leaders[tp.topic]
	f.mu.Unlock()
	cached = cached && time.Since(l.at) < f.ttl
	if _, ok := l.leaders[tp.partition]; cached && !ok {
		f.forget(tp.topic)
		cached = false
	}
	if !cached {
		var err error
		if l, err = f.lookup(ctx, tp.topic); err != nil {
			return 0, err
		}
	}
	id, ok := l.leaders[tp.partition]
	if !ok {
		return 0, fmt.Errorf("fetch %s/%d: %w", tp.topic, tp.partition, kafka.UnknownTopicOrPartition)
	}
	if id < 0 {
		return 0, fmt.Errorf("fetch %s/%d: %w", tp.topic, tp.partition, kafka.LeaderNotAvailable)
	}
	return id, nil
}

func (f *fetcher) lookup(ctx context.Context, topic string) (topicLeaders, error) {
	f.lookupMu.Lock() // readers starting together look up once
	defer f.lookupMu.Unlock()
	f.mu.Lock()
	l, ok := f.leaders[topic]
	f.mu.Unlock()
	if ok && time.Since(l.at) < f.ttl {
		return l, nil
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	resp, err := f.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return topicLeaders{}, fmt.Errorf("leaders of %s: %w", topic, err)
	}
	l = topicLeaders{at: time.Now(), leaders: map[int]int{}}
	for _, t := range resp.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return topicLeaders{}, fmt.Errorf("leaders of %s: %w", topic, t.Error)
		}
		for _, p := range t.Partitions {
			l.leaders[p.ID] = p.Leader.ID
			if p.Leader.Host == "" { // no leader now (the id alone may be node 0)
				l.leaders[p.ID] = -1
			}
		}
	}
	f.mu.Lock()
	f.leaders[topic] = l
	f.mu.Unlock()
	return l, nil
}

// forget drops the cached leaders of topic, after an answer saying they moved.
func (f *fetcher) forget(topic string) {
	f.mu.Lock()
	delete(f.leaders, topic)
	f.mu.Unlock()
}

func (f *fetcher) enqueue(w *want) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.enqueueLocked(w)
}

func (f *fetcher) enqueueLocked(w *want) {
	q := f.queues[w.key]
	if q == nil {
		q = &fetchQueue{awaited: map[topicPartition]bool{}}
		f.queues[w.key] = q
	}
	q.pending = append(q.pending, w)
	delete(q.awaited, w.tp)
	f.kick(w.key, q)
}

// withdraw takes a reader's partition out of the next request; one in flight answers to nobody.
func (f *fetcher) withdraw(w *want) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.gone = true
	if q := f.queues[w.key]; q != nil {
		delete(q.awaited, w.tp)
		if i := slices.Index(q.pending, w); i >= 0 {
			q.pending = slices.Delete(q.pending, i, i+1)
		}
		f.kick(w.key, q) // the others may have waited for it
	}
}

// kick sends the queue's pending partitions when it is time. A request that has just gone out may well
// come back within a few milliseconds with data (minBytes 1), and then its partitions go again together
// with the pending ones; one that has been out longer than fetchYoung is long-polling idle partitions,
// and the pending ones go at once in a request of their own. The partitions of a response come back
// within microseconds when their readers found nothing; the pending ones wait for them up to
// fetchGather. Called with f.mu held.
func (f *fetcher) kick(key fetchKey, q *fetchQueue) {
	if len(q.pending) == 0 {
		return
	}
	now := time.Now()
	at := now
	if len(q.awaited) > 0 || !q.started {
		at = q.pending[0].since.Add(fetchGather)
	}
	if q.inflight > 0 && q.lastSend.Add(fetchYoung).After(at) {
		at = q.lastSend.Add(fetchYoung)
	}
	if now.Before(at) {
		f.arm(key, q, at)
		return
	}
	reqs := f.take(q)
	q.inflight += len(reqs)
	q.started, q.lastSend = true, now
	clear(q.awaited) // a reader not back by now (busy, closed) is not waited for again
	for _, wants := range reqs {
		go f.send(key, q, wants)
	}
}

// arm makes the queue looked at again at at (or sooner if it already is). Called with f.mu held.
func (f *fetcher) arm(key fetchKey, q *fetchQueue, at time.Time) {
	if q.armed && !at.Before(q.armedAt) {
		return
	}
	q.armed, q.armedAt = true, at
	if q.timer == nil {
		q.timer = time.AfterFunc(time.Until(at), func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			q.armed = false
			f.kick(key, q)
		})
		return
	}
	q.timer.Reset(time.Until(at))
}

// take removes the pending partitions of the next requests: one fetch per partition (a second reader of
// the same partition waits for the next), partitions left empty last time first, and a partition whose
// request failed whole in a request of its own, so that its failing again fails nobody else. Called
// with f.mu held.
func (f *fetcher) take(q *fetchQueue) [][]*want {
	var wants, rest []*want
	var reqs [][]*want
	in := map[topicPartition]bool{}
	for _, w := range q.pending {
		switch {
		case in[w.tp]:
			rest = append(rest, w)
		case f.alone[w.tp]:
			reqs = append(reqs, []*want{w})
		case f.starved[w.tp]:
			delete(f.starved, w.tp)
			wants = append([]*want{w}, wants...)
		default:
			wants = append(wants, w)
		}
		in[w.tp] = true
	}
	q.pending = rest
	if len(wants) > 0 {
		reqs = append(reqs, wants)
	}
	return reqs
}

func (f *fetcher) send(key fetchKey, q *fetchQueue, wants []*want) {
	ctx, cancel := context.WithTimeout(context.Background(), f.maxWait+f.timeout)
	m, err := f.client.Transport.RoundTrip(ctx, f.client.Addr, f.request(key, wants))
	cancel()
	f.mu.Lock()
	q.inflight--
	if resp, ok := m.(*fetch.Response); ok && err == nil {
		for _, t := range resp.Topics { // a partition answered with an error comes back after a backoff
			for _, p := range t.Partitions {
				if p.ErrorCode == 0 {
					q.awaited[topicPartition{t.Topic, int(p.Partition)}] = true
				}
			}
		}
	}
	f.mu.Unlock()
	f.deliver(wants, m, err)
	f.mu.Lock()
	f.kick(key, q)
	f.mu.Unlock()
}

// request is one fetch request for wants: each partition up to maxBytes, the whole up to the sum, so
// that a response holds what the partitions' own requests would have.
func (f *fetcher) request(key fetchKey, wants []*want) *fetch.Request {
	req := &fetch.Request{
		ReplicaID:      -1,
		MaxWaitTime:    int32(f.maxWait.Milliseconds()),
		MinBytes:       int32(f.minBytes),
		MaxBytes:       int32(min(int64(f.maxBytes)*int64(len(wants)), math.MaxInt32)),
		IsolationLevel: int8(key.isolation),
		SessionID:      -1,
		SessionEpoch:   -1,
	}
	index := map[string]int{}
	for _, w := range wants {
		i, ok := index[w.tp.topic]
		if !ok {
			i = len(req.Topics)
			index[w.tp.topic] = i
			req.Topics = append(req.Topics, fetch.RequestTopic{Topic: w.tp.topic})
		}
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, fetch.RequestPartition{
			Partition: int32(w.tp.partition), CurrentLeaderEpoch: -1, FetchOffset: w.offset, LogStartOffset: -1,
			PartitionMaxBytes: int32(f.maxBytes),
		})
	}
	return req
}

// deliver hands each partition its part of the response. An error of the whole request reaches every
// partition only when the broker is gone or slow. A routing one (the transport's metadata changed
// under the request) makes the partitions looked up again and sent anew, each failing alone if its own
// lookup fails; any other (kafka-go fails the decode of a whole response on one partition's corrupt
// batch) makes them sent again one by one, so that only the partition at fault fails.
func (f *fetcher) deliver(wants []*want, m protocol.Message, err error) {
	var routing *fetch.Error
	switch {
	case errors.As(err, &routing):
		f.reroute(wants, err)
		return
	case err != nil && len(wants) > 1 && !brokerGone(err):
		f.split(wants)
		return
	case err != nil:
		for _, w := range wants {
			f.forget(w.tp.topic) // the broker may be gone and its partitions led elsewhere now
			w.res <- partFetch{err: err, timeout: errors.Is(err, context.DeadlineExceeded)}
		}
		return
	}
	resp := m.(*fetch.Response)
	throttle := time.Duration(resp.ThrottleTimeMs) * time.Millisecond
	Throttled("fetch", throttle)
	if resp.ErrorCode != 0 {
		for _, w := range wants {
			w.res <- partFetch{err: kafka.Error(resp.ErrorCode)}
		}
		return
	}
	f.mu.Lock()
	for _, w := range wants { // the response decoded: each goes with the others again
		delete(f.alone, w.tp)
	}
	f.mu.Unlock()
	parts := map[topicPartition]*fetch.ResponsePartition{}
	for i := range resp.Topics {
		t := &resp.Topics[i]
		for j := range t.Partitions {
			parts[topicPartition{t.Topic, int(t.Partitions[j].Partition)}] = &t.Partitions[j]
		}
	}
	var missing []*want
	for _, w := range wants {
		p := parts[w.tp]
		if p == nil {
			missing = append(missing, w)
			continue
		}
		f.note(w, p)
		w.res <- partFetch{p: p}
	}
	f.again(missing, throttle)
}

// again sends wants anew after d: partitions a response left out have no data now. Kafka answers a fetch
// over a consumer quota with no partitions and holds the connection back for the throttle time it names,
// so a quota slows the readers down and fails none of them (docs/operations.md). Left out without a
// throttle, a partition is asked again after maxWait, as after an idle long poll.
func (f *fetcher) again(wants []*want, d time.Duration) {
	if len(wants) == 0 {
		return
	}
	if d <= 0 {
		d = f.maxWait
	}
	time.AfterFunc(d, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, w := range wants {
			if !w.gone { // withdrawn while waiting: its reader stopped
				w.since = time.Now()
				f.enqueueLocked(w)
			}
		}
	})
}

// note learns from a partition's answer: leaders moved, or data left out (a record batch larger than
// maxBytes comes only to the first partition with data in a response, so that partition goes first).
func (f *fetcher) note(w *want, p *fetch.ResponsePartition) {
	switch kafka.Error(p.ErrorCode) {
	case kafka.NotLeaderForPartition, kafka.UnknownTopicOrPartition, kafka.LeaderNotAvailable,
		kafka.FencedLeaderEpoch, kafka.UnknownLeaderEpoch, kafka.ReplicaNotAvailable:
		f.forget(w.tp.topic)
		return
	}
	end := p.HighWatermark
	if w.isolation == kafka.ReadCommitted && p.LastStableOffset >= 0 {
		end = p.LastStableOffset
	}
	if p.ErrorCode == 0 && p.RecordSet.Records == nil && end > w.offset {
		f.mu.Lock()
		f.starved[w.tp] = true
		f.mu.Unlock()
	}
}

// split sends the partitions of a request that failed whole again, each in a request of its own until
// one of its fetches decodes.
func (f *fetcher) split(wants []*want) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range wants {
		f.alone[w.tp] = true
		if !w.gone {
			w.since = time.Now()
			f.enqueueLocked(w)
		}
	}
}

// brokerGone tells a failure of the connection or of the broker's time, which every partition's own
// request would meet too, from one of the response's content.
func brokerGone(err error) bool {
	var netErr net.Error // dial and socket errors, timeouts (context.DeadlineExceeded is one)
	return errors.As(err, &netErr) || errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func (f *fetcher) reroute(wants []*want, err error) {
	for _, w := range wants {
		f.forget(w.tp.topic)
	}
	for _, w := range wants {
		if w.reroutes >= fetchReroutes || len(wants) == 1 {
			w.res <- partFetch{err: err}
			continue
		}
		f.mu.Lock()
		gone := w.gone
		f.mu.Unlock()
		if gone { // its reader stopped waiting: not worth a lookup
			continue
		}
		leader, lerr := f.leader(context.Background(), w.tp)
		if lerr != nil {
			w.res <- partFetch{err: lerr}
			continue
		}
		f.mu.Lock()
		if !w.gone { // withdraw reads the key under the lock
			w.reroutes++
			w.key, w.since = fetchKey{leader, w.isolation}, time.Now()
			f.enqueueLocked(w)
		}
		f.mu.Unlock()
	}
}

// fetcher returns the factory's fetcher, made on first use over the shared client.
func (f *Factory) fetcher() *fetcher {
	f.fetcherOnce.Do(func() {
		c := f.cfg.Consumer
		f.readFetcher = newFetcher(f.Client(), c.MinBytes, c.MaxBytes, c.MaxWait, f.cfg.RequestTimeout, f.cfg.MetadataTTL)
	})
	return f.readFetcher
}
