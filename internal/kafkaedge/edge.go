// Package kafkaedge is where cimstream meets kafka-go: consumer-group membership, partition readers,
// the sink that writes records and classifies their errors one by one, admin queries (topics, lag),
// changelog reads, and the client statistics collector. The stage runtime (internal/stage) sees only
// its own small interfaces, implemented here.
package kafkaedge

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
)

// Broker implements stage.Broker with kafka-go.
type Broker struct {
	factory *kafkaclient.Factory
	stats   *Stats
}

// NewBroker returns a broker; stats may be nil.
func NewBroker(factory *kafkaclient.Factory, stats *Stats) *Broker {
	return &Broker{factory: factory, stats: stats}
}

// Group joins groupID for topics.
func (b *Broker) Group(groupID string, topics []string) (stage.Group, error) {
	cg, err := kafka.NewConsumerGroup(b.factory.GroupConfig(groupID, topics))
	if err != nil {
		return nil, err
	}
	return group{cg: cg, client: b.factory.Client()}, nil
}

type group struct {
	cg     *kafka.ConsumerGroup
	client *kafka.Client
}

func (g group) Next(ctx context.Context) (stage.Generation, error) {
	gen, err := kafkaclient.NextGeneration(ctx, g.cg)
	if err != nil {
		return nil, err
	}
	return generation{gen: gen, client: g.client}, nil
}

func (g group) Close() error { return g.cg.Close() }

type generation struct {
	gen    *kafka.Generation
	client *kafka.Client
}

func (g generation) ID() int32 { return g.gen.ID }

func (g generation) Assignments() []stage.Assignment {
	var out []stage.Assignment
	for topic, as := range g.gen.Assignments {
		for _, a := range as {
			out = append(out, stage.Assignment{Topic: topic, Partition: a.ID, Offset: a.Offset})
		}
	}
	return out
}

func (g generation) Start(fn func(ctx context.Context)) { g.gen.Start(fn) }

func (g generation) Commit(offsets map[string]map[int]int64) error {
	return g.gen.CommitOffsets(offsets)
}

// CommitMetadata implements stage.MetadataCommitter: an OffsetCommit request of this generation and
// member (kafka-go's Generation.CommitOffsets sends no metadata), which the coordinator refuses once the
// generation is over.
func (g generation) CommitMetadata(offsets map[string]map[int]stage.OffsetMeta) error {
	req := &kafka.OffsetCommitRequest{GroupID: g.gen.GroupID, GenerationID: int(g.gen.ID), MemberID: g.gen.MemberID,
		Topics: map[string][]kafka.OffsetCommit{}}
	for topic, parts := range offsets {
		for p, om := range parts {
			req.Topics[topic] = append(req.Topics[topic], kafka.OffsetCommit{Partition: p, Offset: om.Offset, Metadata: om.Metadata})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := g.client.OffsetCommit(ctx, req)
	if err != nil {
		return err
	}
	for topic, parts := range resp.Topics {
		for _, p := range parts {
			if p.Error != nil {
				return fmt.Errorf("commit %s/%d: %w", topic, p.Partition, p.Error)
			}
		}
	}
	return nil
}

// Committed implements stage.MetadataFetcher.
func (b *Broker) Committed(ctx context.Context, group, topic string, partition int) (stage.OffsetMeta, error) {
	resp, err := b.factory.Client().OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {partition}}})
	if err != nil {
		return stage.OffsetMeta{}, err
	}
	if resp.Error != nil {
		return stage.OffsetMeta{}, resp.Error
	}
	for _, p := range resp.Topics[topic] {
		if p.Partition == partition {
			if p.Error != nil {
				return stage.OffsetMeta{}, p.Error
			}
			return stage.OffsetMeta{Offset: p.CommittedOffset, Metadata: p.Metadata}, nil
		}
	}
	return stage.OffsetMeta{Offset: -1}, nil
}

// Reader opens one partition at offset.
func (b *Broker) Reader(stageName, topic string, partition int, offset int64) (stage.Reader, error) {
	r, err := b.factory.PartitionReader(topic, partition, offset)
	if err != nil {
		return nil, err
	}
	return &reader{r: r, stats: b.stats, stage: stageName, reported: time.Now()}, nil
}

type reader struct {
	r        *kafkaclient.Reader
	stats    *Stats
	stage    string
	reported time.Time
}

// statsEvery is how often a reader's statistics are handed to the collector (kafka-go resets them on
// each read, so they are taken by the reader itself, not by the scrape).
const statsEvery = 5 * time.Second

func (r *reader) Fetch(ctx context.Context) (stream.Record, error) {
	m, err := r.r.FetchMessage(ctx)
	if now := time.Now(); now.Sub(r.reported) >= statsEvery {
		r.stats.addReader(r.stage, r.r.Stats())
		r.reported = now
	}
	if err != nil {
		return stream.Record{}, err
	}
	return toRecord(m), nil
}

// Position implements stage.Positioner: the offsets below it were returned or are no records (a
// transaction's markers, an aborted transaction's records).
func (r *reader) Position() int64 { return r.r.Offset() }

func (r *reader) Close() error {
	r.stats.addReader(r.stage, r.r.Stats())
	return r.r.Close()
}

func toRecord(m kafka.Message) stream.Record {
	rec := stream.Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value, Time: m.Time}
	if len(m.Headers) > 0 {
		rec.Headers = make([]stream.Header, len(m.Headers))
		for i, h := range m.Headers {
			rec.Headers[i] = stream.Header{Key: h.Key, Value: h.Value}
		}
	}
	return rec
}
