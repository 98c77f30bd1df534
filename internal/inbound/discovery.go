package inbound

import (
	"context"
	"slices"

	"github.com/cimstream/cimstream/internal/kafkaedge"
)

// channelTopics lists the topics named in the configuration or matching the pattern, sorted, and
// splits off those the fast path takes: with the repartition topic's partition count, when it is on.
func (p *Pipeline) channelTopics(ctx context.Context) (all, coPartitioned []string, partitions int, err error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Kafka.RequestTimeout)
	defer cancel()
	counts, err := kafkaedge.TopicPartitions(ctx, p.kafka)
	if err != nil {
		return nil, nil, 0, err
	}
	n := counts[p.cfg.Topics.Repartition]
	for name, count := range counts {
		if slices.Contains(p.cfg.Topics.Inbound, name) || (p.pattern != nil && p.pattern.MatchString(name)) {
			all = append(all, name)
			if p.cfg.Inbound.FastPath && n > 0 && count == n {
				coPartitioned = append(coPartitioned, name)
			}
		}
	}
	slices.Sort(all)
	slices.Sort(coPartitioned)
	return all, coPartitioned, n, nil
}

// ingestTopics are the channel topics stage 1 reads: those the fast path does not take.
func (p *Pipeline) ingestTopics(ctx context.Context) ([]string, error) {
	all, co, _, err := p.channelTopics(ctx)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(t string) bool { return slices.Contains(co, t) }), nil
}

// claimSessionsTopics lists the topics the sessions stage reads: the repartition topic and the channel
// topics the fast path takes. It also hands those channel topics and the repartition topic's partition
// count to p.homes: each listing decides which channel partitions the fast path may take from then on
// (homeTables.owns).
func (p *Pipeline) claimSessionsTopics(ctx context.Context) ([]string, error) {
	_, co, n, err := p.channelTopics(ctx)
	if err != nil {
		return nil, err
	}
	p.homes.setTopics(co, n)
	return append([]string{p.cfg.Topics.Repartition}, co...), nil
}
