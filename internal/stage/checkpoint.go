package stage

import (
	"encoding/base64"
	"encoding/binary"
	"slices"
	"strings"
	"sync"
	"time"
)

// checkpoint is what an asynchronous partition commits: the highest offset below which every input is
// settled, with the inputs settled above it in the commit's metadata (Parallel Consumer's model), so a
// new owner skips them instead of handling them again.
type checkpoint struct {
	mu      sync.Mutex
	offsets *Offsets
	times   map[int64]time.Time // record time of each input not settled
	base    int64               // the first offset tracked (-1 before): where this owner began
	// prior is the offsets the last commit's metadata listed as settled: they stay in this owner's commits
	// until the committed offset passes them, whether or not this owner fetched them.
	prior map[int64]bool
	// position is where the reader stands once what it returned is tracked (negative: not known).
	position int64
	last     OffsetMeta // what due returned last
	returned bool
}

func newCheckpoint(prior map[int64]bool) *checkpoint {
	return &checkpoint{offsets: NewOffsets(), times: map[int64]time.Time{}, base: -1, prior: prior, position: -1}
}

// track adds an input in flight.
func (c *checkpoint) track(offset int64, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.base < 0 {
		c.base = offset
	}
	c.offsets.Track(offset)
	c.times[offset] = t
}

// settle marks an input settled.
func (c *checkpoint) settle(offset int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offsets.Settle(offset)
	delete(c.times, offset)
}

// skip tracks and settles an input an earlier owner settled (the commit metadata says so).
func (c *checkpoint) skip(offset int64, t time.Time) {
	c.track(offset, t)
	c.settle(offset)
}

func (c *checkpoint) setPosition(pos int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.position = pos
}

// commit is what to commit now: the committable offset, with the settled offsets above it as metadata;
// false before anything settled. Past it, the reader may stand beyond offsets that are no records
// (markers): with nothing in flight they are as done as the records before them.
func (c *checkpoint) commit() (OffsetMeta, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	next, ok := c.offsets.Committable()
	if !ok {
		// Nothing settled from the start yet: the start itself, so what settled above it is kept.
		next, ok = c.base, c.base >= 0 && len(c.settledAbove(c.base)) > 0
	}
	if pos := c.position; pos >= 0 && c.offsets.InFlight() == 0 && (!ok || next < pos) {
		// An earlier owner's settled offsets above pos stay in the metadata, as the commit keeps them.
		next, ok = pos, true
	}
	if !ok {
		return OffsetMeta{}, false
	}
	return OffsetMeta{Offset: next, Metadata: EncodeSettled(next, c.settledAbove(next))}, true
}

// due is commit when it differs from what due returned last.
func (c *checkpoint) due() (OffsetMeta, bool) {
	om, ok := c.commit()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !ok || (c.returned && om == c.last) {
		return OffsetMeta{}, false
	}
	c.last, c.returned = om, true
	return om, true
}

// settledAbove is the offsets settled above next, this owner's and those of the last commit still above
// it, sorted (under mu).
func (c *checkpoint) settledAbove(next int64) []int64 {
	above := c.offsets.SettledAbove()
	if len(c.prior) == 0 {
		return above
	}
	seen := make(map[int64]bool, len(above))
	for _, off := range above {
		seen[off] = true
	}
	for off := range c.prior {
		switch {
		case off < next:
			delete(c.prior, off)
		case !seen[off]:
			above = append(above, off)
		}
	}
	slices.Sort(above)
	return above
}

// oldest is the record time of the oldest input not settled, and false when none is in flight.
func (c *checkpoint) oldest() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	off, ok := c.offsets.Oldest()
	if !ok {
		return time.Time{}, false
	}
	return c.times[off], true
}

// settledPrefix marks the metadata format: the offsets settled above the committed one, as uvarint
// distances from it (each from the previous one), base64url. Parallel Consumer stores the same in its
// commits (a run-length or bitset encoding); a plain list of deltas is enough for the inputs in flight.
const settledPrefix = "cimstream-settled-v1:"

// maxMetadata stays under the brokers' default offset.metadata.max.bytes (4096); offsets that do not fit
// are left out, and handled again after a restart.
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
