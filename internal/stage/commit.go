package stage

import (
	"sync"
	"time"

	"go.uber.org/zap"
)

// committer commits the offsets of a generation's partitions in one request per interval, off the
// partitions' processing path. The broker refuses a commit from a generation that has ended, so a
// partition that moved to another member is never committed here.
type committer struct {
	gen     Generation
	log     *zap.Logger
	sending sync.Mutex // one commit request at a time, so an older one never lands after a newer one
	mu      sync.Mutex
	pending map[string]map[int]OffsetMeta
	// polled are the checkpoints of asynchronous partitions, asked at each flush what to commit.
	polled map[Assignment]*checkpoint
	// metadata: an asynchronous stage's commits always carry metadata (none also says something: nothing
	// settled above the offset).
	metadata bool
}

func newCommitter(gen Generation, log *zap.Logger) *committer {
	return &committer{gen: gen, log: log, pending: map[string]map[int]OffsetMeta{}, polled: map[Assignment]*checkpoint{}}
}

func (c *committer) mark(topic string, partition int, next OffsetMeta) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.markLocked(topic, partition, next)
}

func (c *committer) markLocked(topic string, partition int, next OffsetMeta) {
	if c.pending[topic] == nil {
		c.pending[topic] = map[int]OffsetMeta{}
	}
	c.pending[topic][partition] = next
}

// poll makes every flush of the generation commit what cp says has changed.
func (c *committer) poll(a Assignment, cp *checkpoint) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.polled[a] = cp
	c.metadata = true
}

// oldest is the record time of the oldest unsettled input of the polled partitions (zero: none).
func (c *committer) oldest() (oldest time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cp := range c.polled {
		if t, ok := cp.oldest(); ok && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	return oldest
}

// flush commits what is pending; on failure the offsets stay pending unless newer ones arrived. Metadata
// goes with the offsets of an asynchronous stage, or when some partition has any, if the generation can
// carry it.
func (c *committer) flush() {
	c.sending.Lock()
	defer c.sending.Unlock()
	c.mu.Lock()
	for a, cp := range c.polled {
		if om, ok := cp.due(); ok {
			c.markLocked(a.Topic, a.Partition, om)
		}
	}
	batch := c.pending
	c.pending = map[string]map[int]OffsetMeta{}
	c.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	if err := c.commit(batch); err != nil {
		c.log.Warn("commit failed; the records will be processed again unless a later commit succeeds", zap.Error(err))
		c.mu.Lock()
		for topic, parts := range batch {
			for p, om := range parts {
				if _, newer := c.pending[topic][p]; !newer {
					c.markLocked(topic, p, om)
				}
			}
		}
		c.mu.Unlock()
	}
}

func (c *committer) commit(batch map[string]map[int]OffsetMeta) error {
	plain := make(map[string]map[int]int64, len(batch))
	c.mu.Lock()
	withMetadata := c.metadata
	c.mu.Unlock()
	for topic, parts := range batch {
		plain[topic] = make(map[int]int64, len(parts))
		for p, om := range parts {
			plain[topic][p] = om.Offset
			withMetadata = withMetadata || om.Metadata != ""
		}
	}
	if mc, ok := c.gen.(MetadataCommitter); ok && withMetadata {
		return mc.CommitMetadata(batch)
	}
	return c.gen.Commit(plain)
}
