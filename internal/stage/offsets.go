package stage

import "slices"

// Offsets tracks the inputs of one partition in flight and says which offset may be committed: the
// highest one below which every input is settled, whatever order they settle in.
type Offsets struct {
	pending []int64        // offsets in fetch order, settled or not, from the oldest unsettled one
	settled map[int64]bool // settled offsets still in pending
	next    int64          // the offset after the last settled prefix; -1 before anything settled
}

// NewOffsets returns an empty tracker.
func NewOffsets() *Offsets { return &Offsets{settled: map[int64]bool{}, next: -1} }

// Track adds an input that is now in flight.
func (o *Offsets) Track(offset int64) { o.pending = append(o.pending, offset) }

// Settle marks an input settled, and reports whether the committable offset moved.
func (o *Offsets) Settle(offset int64) bool {
	o.settled[offset] = true
	moved := false
	for len(o.pending) > 0 && o.settled[o.pending[0]] {
		delete(o.settled, o.pending[0])
		o.next = o.pending[0] + 1
		o.pending = o.pending[1:]
		moved = true
	}
	return moved
}

// Committable is the offset to commit (the next one to read), and false when nothing settled yet.
func (o *Offsets) Committable() (int64, bool) { return o.next, o.next >= 0 }

// InFlight is the number of inputs not yet settled.
func (o *Offsets) InFlight() int { return len(o.pending) - len(o.settled) }

// SettledAbove lists, in order, the settled inputs above the committable offset (those a restart from
// it would process again).
func (o *Offsets) SettledAbove() []int64 {
	out := make([]int64, 0, len(o.settled))
	for off := range o.settled {
		out = append(out, off)
	}
	slices.Sort(out)
	return out
}

// Oldest is the oldest input not yet settled, and false when none is in flight.
func (o *Offsets) Oldest() (int64, bool) {
	if len(o.pending) == 0 {
		return 0, false
	}
	return o.pending[0], true
}
