package fakekafka

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/stage"
)

// group is a consumer group: its committed offsets, and its one member (the fake models no more).
type group struct {
	id        string
	committed map[string]map[int]stage.OffsetMeta
	lastID    int32 // the latest generation's id; ids grow across members, as the coordinator's do
	member    *member
}

type member struct {
	b       *Broker
	g       *group
	topics  []string
	owns    func(topic string, partition int) bool // nil: every partition
	current *generation                            // the generation in progress, nil between two
	next    *generation                            // made, not yet returned by Next
	closed  bool
}

// rejoin is how long a member takes to join the next generation after one ended.
const rejoin = 5 * time.Millisecond

// Group implements stage.Broker: the member joins and is assigned every partition of topics (those that
// exist) at the group's committed offsets, kafka.FirstOffset where it has none.
func (b *Broker) Group(groupID string, topics []string) (stage.Group, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	g := b.groups[groupID]
	if g == nil {
		g = &group{id: groupID, committed: map[string]map[int]stage.OffsetMeta{}}
		b.groups[groupID] = g
	}
	if g.member != nil {
		return nil, fmt.Errorf("fakekafka: group %s already has a member", groupID)
	}
	g.member = &member{b: b, g: g, topics: topics}
	g.member.generateLocked()
	return g.member, nil
}

// generateLocked makes the member's next generation.
func (m *member) generateLocked() {
	m.g.lastID++
	ctx, cancel := context.WithCancel(context.Background())
	gen := &generation{m: m, id: m.g.lastID, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	for _, name := range m.topics {
		t := m.b.topics[name]
		if t == nil {
			continue
		}
		for p := range t.parts {
			if m.owns != nil && !m.owns(name, p) {
				continue
			}
			off := int64(kafka.FirstOffset)
			if om, ok := m.g.committed[name][p]; ok {
				off = om.Offset
			}
			gen.assignments = append(gen.assignments, stage.Assignment{Topic: name, Partition: p, Offset: off})
		}
	}
	m.current, m.next = gen, gen
	m.b.wakeLocked()
}

func (m *member) Next(ctx context.Context) (stage.Generation, error) {
	for {
		m.b.mu.Lock()
		gen, closed, wait := m.next, m.closed, m.b.changed
		m.next = nil
		m.b.mu.Unlock()
		switch {
		case closed:
			return nil, kafka.ErrGroupClosed
		case gen != nil:
			return gen, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wait:
		}
	}
}

// Close leaves the group: the generation ends, and Close returns once its functions returned.
func (m *member) Close() error {
	m.b.mu.Lock()
	m.closed = true
	if m.g.member == m {
		m.g.member = nil
	}
	gen := m.current
	m.b.wakeLocked()
	m.b.mu.Unlock()
	if gen != nil {
		gen.end()
		<-gen.done
	}
	return nil
}

// Rebalance ends group's generation as a rebalance does and gives its member the next one, owning the
// partitions for which owns says so (nil: all of them; see None) until the next Rebalance. The
// channel closes once every function started in the ended generation returned (then the next
// generation starts).
func (b *Broker) Rebalance(group string, owns func(topic string, partition int) bool) <-chan struct{} {
	b.mu.Lock()
	var gen *generation
	if g := b.groups[group]; g != nil && g.member != nil {
		g.member.owns = owns
		gen = g.member.current
	}
	b.mu.Unlock()
	if gen == nil {
		done := make(chan struct{})
		close(done)
		return done
	}
	gen.end()
	return gen.done
}

// None owns no partition: Rebalance(group, None) is another member taking every partition.
func None(string, int) bool { return false }

// Committed implements stage.MetadataFetcher.
func (b *Broker) Committed(_ context.Context, group, topic string, partition int) (stage.OffsetMeta, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if g := b.groups[group]; g != nil {
		if om, ok := g.committed[topic][partition]; ok {
			return om, nil
		}
	}
	return stage.OffsetMeta{Offset: -1}, nil
}

// generation implements stage.Generation and stage.MetadataCommitter. As kafka-go's, it ends when a
// function given to Start returns, and it is over for the member once every one of them returned.
type generation struct {
	m           *member
	id          int32
	assignments []stage.Assignment
	ctx         context.Context
	cancel      context.CancelFunc

	mu      sync.Mutex
	running int
	over    bool
	done    chan struct{} // closed when over and no function runs
}

func (g *generation) ID() int32                       { return g.id }
func (g *generation) Assignments() []stage.Assignment { return g.assignments }

func (g *generation) Start(fn func(ctx context.Context)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.over {
		go fn(g.ctx)
		return
	}
	g.running++
	go func() {
		fn(g.ctx)
		g.end()
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.running--; g.running == 0 {
			close(g.done)
		}
	}()
}

// end ends the generation; once its functions returned, the member rejoins unless it left.
func (g *generation) end() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.over {
		return
	}
	g.over = true
	g.cancel()
	if g.running == 0 {
		close(g.done)
	}
	go func() {
		<-g.done
		time.Sleep(rejoin)
		b := g.m.b
		b.mu.Lock()
		defer b.mu.Unlock()
		if !g.m.closed && g.m.current == g {
			g.m.generateLocked()
		}
	}()
}

func (g *generation) Commit(offsets map[string]map[int]int64) error {
	meta := map[string]map[int]stage.OffsetMeta{}
	for topic, parts := range offsets {
		meta[topic] = map[int]stage.OffsetMeta{}
		for p, off := range parts {
			meta[topic][p] = stage.OffsetMeta{Offset: off}
		}
	}
	return g.CommitMetadata(meta)
}

// CommitMetadata commits offsets with metadata; the coordinator refuses a generation that is over.
func (g *generation) CommitMetadata(offsets map[string]map[int]stage.OffsetMeta) error {
	b := g.m.b
	if b.FailCommit != nil {
		if err := b.FailCommit(g.m.g.id); err != nil {
			return err
		}
	}
	g.mu.Lock()
	over := g.over
	g.mu.Unlock()
	if over {
		return fmt.Errorf("commit of generation %d of %s: %w", g.id, g.m.g.id, kafka.IllegalGeneration)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for topic, parts := range offsets {
		if g.m.g.committed[topic] == nil {
			g.m.g.committed[topic] = map[int]stage.OffsetMeta{}
		}
		for p, om := range parts {
			g.m.g.committed[topic][p] = om
		}
	}
	return nil
}
