package egress

import (
	"encoding/base64"
	"encoding/binary"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/stage"
)

// settledPrefix marks the metadata format: the offsets settled above the committed one, as uvarint
// distances from it (each from the previous one), base64url. Parallel Consumer stores the same in its
// commits (a run-length or bitset encoding); a plain list of deltas is enough for egress.maxInFlight.
const settledPrefix = "cimstream-settled-v1:"

// maxMetadata stays under the brokers' default offset.metadata.max.bytes (4096); offsets that do not fit
// are left out, and delivered again after a restart.
const maxMetadata = 4000

// EncodeSettled is the commit metadata of the settled offsets above (sorted, all >= next).
func EncodeSettled(next int64, above []int64) string {
	if len(above) == 0 {
		return ""
	}
	buf := make([]byte, 0, 2*len(above))
	prev := next
	limit := (maxMetadata - len(settledPrefix)) * 3 / 4
	for _, off := range above {
		if off < prev {
			continue
		}
		n := len(buf)
		buf = binary.AppendUvarint(buf, uint64(off-prev))
		if len(buf) > limit {
			buf = buf[:n]
			break
		}
		prev = off
	}
	return settledPrefix + base64.RawURLEncoding.EncodeToString(buf)
}

// DecodeSettled reads EncodeSettled's metadata committed with offset next; anything else gives none.
func DecodeSettled(next int64, meta string) map[int64]bool {
	data, ok := strings.CutPrefix(meta, settledPrefix)
	if !ok || next < 0 {
		return nil
	}
	buf, err := base64.RawURLEncoding.DecodeString(data)
	if err != nil {
		return nil
	}
	out := map[int64]bool{}
	prev := next
	for len(buf) > 0 {
		d, n := binary.Uvarint(buf)
		if n <= 0 {
			return out
		}
		buf = buf[n:]
		prev += int64(d)
		out[prev] = true
	}
	return out
}

// committer commits a generation's partitions, each with its settled offsets above the committed one in
// the metadata (when the generation can carry it), and only what changed since the last commit.
type committer struct {
	gen     stage.Generation
	log     *zap.Logger
	sending sync.Mutex // one commit request at a time, so an older one never lands after a newer one
	last    map[string]map[int]stage.OffsetMeta
}

func newCommitter(gen stage.Generation, log *zap.Logger) *committer {
	return &committer{gen: gen, log: log, last: map[string]map[int]stage.OffsetMeta{}}
}

// flush commits snap (by topic and partition) where it differs from the last commit.
func (c *committer) flush(snap map[string]map[int]stage.OffsetMeta) {
	c.sending.Lock()
	defer c.sending.Unlock()
	changed := map[string]map[int]stage.OffsetMeta{}
	plain := map[string]map[int]int64{}
	for topic, parts := range snap {
		for p, om := range parts {
			if c.last[topic][p] == om {
				continue
			}
			if changed[topic] == nil {
				changed[topic], plain[topic] = map[int]stage.OffsetMeta{}, map[int]int64{}
			}
			changed[topic][p], plain[topic][p] = om, om.Offset
		}
	}
	if len(changed) == 0 {
		return
	}
	var err error
	if mc, ok := c.gen.(stage.MetadataCommitter); ok {
		err = mc.CommitMetadata(changed)
	} else {
		err = c.gen.Commit(plain)
	}
	if err != nil {
		c.log.Warn("commit failed; the messages will be delivered again unless a later commit succeeds", zap.Error(err))
		return
	}
	for topic, parts := range changed {
		if c.last[topic] == nil {
			c.last[topic] = map[int]stage.OffsetMeta{}
		}
		for p, om := range parts {
			c.last[topic][p] = om
		}
	}
}
