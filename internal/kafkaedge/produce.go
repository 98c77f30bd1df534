package kafkaedge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/produce"

	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
)

// partitionWrite is what a Write call still has to send to one partition.
type partitionWrite struct {
	topicPartition
	leader   int   // node id, from the sink's metadata
	idx      []int // the records not sent yet, in order
	single   int   // how many of idx go one per request: the broker found their chunk too large
	rerouted bool  // the leader was read again once in this call, after a routing error

	// This round's chunk (the first n of idx) and its outcome.
	n, bytes int
	err      error
}

// Write implements stage.Sink.
func (s *Sink) Write(ctx context.Context, outputs []stream.Output) []error {
	errs := make([]error, len(outputs))
	parts := s.group(ctx, outputs, errs)
	for len(parts) > 0 {
		s.round(ctx, outputs, parts)
		more := parts[:0]
		for _, p := range parts {
			if s.reroute(ctx, p) || s.settle(p, errs) {
				more = append(more, p)
			}
		}
		parts = more
	}
	return errs
}

// group sorts the records into partitions with a leader; the others get their error in errs.
func (s *Sink) group(ctx context.Context, outputs []stream.Output, errs []error) []*partitionWrite {
	type lookup struct {
		leaders []int
		err     error
	}
	byTP := map[topicPartition]*partitionWrite{}
	var parts []*partitionWrite
	lookups := map[string]lookup{} // one lookup per topic and call: a later record never gets a partition an earlier one failed to get
	for i, o := range outputs {
		if size := RecordSize(o) + batchOverhead; size > s.batchBytes {
			errs[i] = fmt.Errorf("%d bytes exceed kafka.producer.batchBytes (%d): %w", size, s.batchBytes, stage.ErrTooLarge)
			continue
		}
		l, ok := lookups[o.Topic]
		if !ok {
			l.leaders, l.err = s.partitions(ctx, o.Topic)
			lookups[o.Topic] = l
		}
		if l.err != nil {
			errs[i] = l.err
			continue
		}
		k := topicPartition{o.Topic, s.partitionOf(o, len(l.leaders))}
		p := byTP[k]
		if p == nil {
			p = &partitionWrite{topicPartition: k, leader: l.leaders[k.partition]}
			byTP[k] = p
			parts = append(parts, p)
		}
		p.idx = append(p.idx, i)
	}
	return s.dropLeaderless(parts, errs)
}

// dropLeaderless fails the records of partitions without a leader (retryable: one is being elected).
func (s *Sink) dropLeaderless(parts []*partitionWrite, errs []error) []*partitionWrite {
	kept := parts[:0]
	for _, p := range parts {
		if p.leader >= 0 {
			kept = append(kept, p)
			continue
		}
		s.forget(p.topic)
		for _, i := range p.idx {
			errs[i] = fmt.Errorf("produce to %s/%d: %w", p.topic, p.partition, kafka.LeaderNotAvailable)
		}
	}
	return kept
}

// round sends each partition's next chunk: one request per leader (more when the chunks exceed
// requestBytes together), the requests in parallel.
func (s *Sink) round(ctx context.Context, outputs []stream.Output, parts []*partitionWrite) {
	byLeader := map[int][]*partitionWrite{}
	var leaders []int
	for _, p := range parts {
		s.nextChunk(p, outputs)
		if _, ok := byLeader[p.leader]; !ok {
			leaders = append(leaders, p.leader)
		}
		byLeader[p.leader] = append(byLeader[p.leader], p)
	}
	var requests [][]*partitionWrite
	for _, l := range leaders {
		requests = append(requests, splitRequests(byLeader[l], s.requestBytes())...)
	}
	if len(requests) == 1 {
		s.send(ctx, outputs, requests[0])
		return
	}
	var wg sync.WaitGroup
	for _, r := range requests {
		wg.Go(func() { s.send(ctx, outputs, r) })
	}
	wg.Wait()
}

// maxRequestBytes bounds one produce request, as the Java producer's max.request.size does: a broker
// closes the connection on a request above its socket.request.max.bytes (100 MiB by default), and a
// request that can never be sent would be retried for good. A partition's chunk is at most batchBytes,
// so a request holds at least one chunk whatever the bound.
const maxRequestBytes = 16 << 20

func (s *Sink) requestBytes() int { return max(s.batchBytes, maxRequestBytes) }

// splitRequests packs the chunks of one leader's partitions into requests of at most limit bytes (one
// chunk per partition and round, so a partition's order never depends on how they are packed).
func splitRequests(parts []*partitionWrite, limit int) [][]*partitionWrite {
	var out [][]*partitionWrite
	start, bytes := 0, 0
	for i, p := range parts {
		if i > start && bytes+p.bytes > limit {
			out = append(out, parts[start:i])
			start, bytes = i, 0
		}
		bytes += p.bytes
	}
	return append(out, parts[start:])
}

// nextChunk takes the first records of p that fit in a batch (one, while they go one by one).
func (s *Sink) nextChunk(p *partitionWrite, outputs []stream.Output) {
	limit := s.batchSize
	if p.single > 0 {
		limit = 1
	}
	n, bytes := 0, batchOverhead
	for n < len(p.idx) && n < limit {
		size := RecordSize(outputs[p.idx[n]])
		if n > 0 && bytes+size > s.batchBytes {
			break
		}
		bytes += size
		n++
	}
	p.n, p.bytes, p.err = n, bytes, nil
}

// reroute reads p's leader again after the transport refused to route its request (nothing was sent:
// its metadata moved on from the sink's), once per call, so that partition goes in the next round.
func (s *Sink) reroute(ctx context.Context, p *partitionWrite) bool {
	var rerr *produce.Error
	if p.rerouted || !errors.As(p.err, &rerr) {
		return false
	}
	p.rerouted = true
	leaders, err := s.partitions(ctx, p.topic)
	switch {
	case err != nil:
		p.err = err
		return false
	case p.partition >= len(leaders) || leaders[p.partition] < 0:
		return false
	}
	p.leader = leaders[p.partition]
	return true
}

// settle applies p's outcome of the round to errs and says whether p has records left to send.
func (s *Sink) settle(p *partitionWrite, errs []error) bool {
	switch {
	case p.err == nil:
	case stage.Final(p.err) && p.n > 1:
		// The broker measures the whole batch against max.message.bytes: send these one by one, so
		// only a record that does not fit on its own fails.
		p.single = p.n
		return true
	case stage.Final(p.err):
		errs[p.idx[0]] = p.err
	default:
		// The partition stops at its first failure: its later records are not attempted.
		for _, i := range p.idx[:p.n] {
			errs[i] = p.err
		}
		for _, i := range p.idx[p.n:] {
			errs[i] = errNotAttempted{p.err}
		}
		return false
	}
	p.idx = p.idx[p.n:]
	p.single = max(0, p.single-p.n)
	return len(p.idx) > 0
}

// send sends one request holding the chunk of each of parts (one leader) and waits for acks=all.
func (s *Sink) send(ctx context.Context, outputs []stream.Output, parts []*partitionWrite) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if s.client.Timeout > 0 { // as kafka.Client's own requests
		ctx, cancel = context.WithTimeout(ctx, s.client.Timeout)
		defer cancel()
	}
	start := time.Now()
	m, err := s.transport().RoundTrip(ctx, s.client.Addr, s.request(ctx, outputs, parts))
	took := time.Since(start)
	if err == nil {
		err = s.read(m, parts)
	}
	if err != nil {
		// Nothing of it is known to be written. "mismatching leaders" (the transport's metadata moved
		// on from the sink's) and a broker gone both mean the leaders must be read again.
		for _, p := range parts {
			p.err = kafkaclient.Explain(fmt.Errorf("produce to %s/%d: %w", p.topic, p.partition, err))
			s.forget(p.topic)
		}
	}
	s.account(parts, took)
}

func (s *Sink) transport() kafka.RoundTripper {
	if s.client.Transport != nil {
		return s.client.Transport
	}
	return kafka.DefaultTransport
}

// request is the produce request for the chunks of parts, one record batch per partition.
func (s *Sink) request(ctx context.Context, outputs []stream.Output, parts []*partitionWrite) *produce.Request {
	req := &produce.Request{Acks: int16(kafka.RequireAll), Timeout: timeoutMs(ctx)}
	topic := map[string]int{} // index in req.Topics
	for _, p := range parts {
		t, ok := topic[p.topic]
		if !ok {
			t = len(req.Topics)
			topic[p.topic] = t
			req.Topics = append(req.Topics, produce.RequestTopic{Topic: p.topic})
		}
		req.Topics[t].Partitions = append(req.Topics[t].Partitions, produce.RequestPartition{
			Partition: int32(p.partition),
			RecordSet: protocol.RecordSet{
				Attributes: protocol.Attributes(s.compression) & 0x7, // the codec bits, as kafka.Client.Produce sets them
				Records:    kafka.NewRecordReader(records(outputs, p.idx[:p.n])...),
			},
		})
	}
	return req
}

// timeoutMs is the broker's wait for acks=all: half of what is left, as kafka.Client.Produce asks, so
// the answer comes back before ctx ends.
func timeoutMs(ctx context.Context) int32 {
	d := 15 * time.Second
	if deadline, ok := ctx.Deadline(); ok {
		d = time.Until(deadline) / 2
	}
	return int32(max(d, time.Millisecond) / time.Millisecond)
}

func records(outputs []stream.Output, idx []int) []kafka.Record {
	out := make([]kafka.Record, len(idx))
	for j, i := range idx {
		o := outputs[i]
		r := kafka.Record{Time: o.Time, Key: kafka.NewBytes(o.Key), Value: kafka.NewBytes(o.Value)}
		if o.Value == nil {
			r.Value = nil // a tombstone
		}
		if o.Key == nil {
			r.Key = nil
		}
		if len(o.Headers) > 0 {
			r.Headers = make([]kafka.Header, len(o.Headers))
			for h, hd := range o.Headers {
				r.Headers[h] = kafka.Header{Key: hd.Key, Value: hd.Value}
			}
		}
		out[j] = r
	}
	return out
}

// read sets each partition's outcome from the broker's response.
func (s *Sink) read(m protocol.Message, parts []*partitionWrite) error {
	resp, ok := m.(*produce.Response)
	if !ok || resp == nil {
		return fmt.Errorf("unexpected answer %T to a produce request", m)
	}
	kafkaclient.Throttled("produce", time.Duration(resp.ThrottleTimeMs)*time.Millisecond) // a quota: the broker holds the next request back
	answers := map[topicPartition]*produce.ResponsePartition{}
	for t := range resp.Topics {
		for i := range resp.Topics[t].Partitions {
			rp := &resp.Topics[t].Partitions[i]
			answers[topicPartition{resp.Topics[t].Topic, int(rp.Partition)}] = rp
		}
	}
	for _, p := range parts {
		rp, ok := answers[p.topicPartition]
		if !ok {
			p.err = fmt.Errorf("produce to %s/%d: the broker's answer does not name the partition", p.topic, p.partition)
			continue
		}
		p.err = s.partitionError(p.topic, p.partition, rp)
	}
	return nil
}

// partitionError is a partition's error code as the stage runtime needs it: final, or retryable
// (after forgetting the topic's leaders where they moved).
func (s *Sink) partitionError(topic string, partition int, rp *produce.ResponsePartition) error {
	if rp.ErrorCode == 0 {
		return nil
	}
	kerr := kafka.Error(rp.ErrorCode)
	var err error = kerr
	if rp.ErrorMessage != "" {
		err = fmt.Errorf("%w: %s", kerr, rp.ErrorMessage)
	}
	for _, re := range rp.RecordErrors {
		err = fmt.Errorf("%w: %v", err, re.BatchIndexErrorMessage)
		break
	}
	switch kerr {
	case kafka.MessageSizeTooLarge, kafka.RecordListTooLarge:
		return fmt.Errorf("produce to %s/%d: %w: %w", topic, partition, err, stage.ErrTooLarge)
	case kafka.InvalidTimestamp, kafka.InvalidRecord, kafka.PolicyViolation:
		// The broker refuses the record itself (a timestamp outside the topic's window, a record a
		// compacted topic cannot take): retrying cannot help.
		return fmt.Errorf("produce to %s/%d: %w: %w", topic, partition, err, stage.ErrRefused)
	case kafka.UnknownTopicOrPartition, kafka.NotLeaderForPartition, kafka.LeaderNotAvailable:
		s.forget(topic)
	}
	return fmt.Errorf("produce to %s/%d: %w", topic, partition, err)
}

// account counts one request: the records and bytes acknowledged, failed when any partition failed.
func (s *Sink) account(parts []*partitionWrite, took time.Duration) {
	records, bytes := 0, 0
	var err error
	for _, p := range parts {
		if p.err != nil {
			err = p.err
			continue
		}
		records += p.n
		bytes += p.bytes
	}
	s.stats.addWrite(s.stage, records, bytes, took, err)
}
