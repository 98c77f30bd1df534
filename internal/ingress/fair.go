package ingress

import (
	"strconv"
	"sync"

	"github.com/cimstream/cimstream/internal/stage"
)

// fair shares the request slots and the bytes of request bodies in flight between tenants. A tenant that
// holds nothing is refused only when the whole limit is used. With n tenants holding requests, the holders
// together stop at the limit less 1/(n+1) of it, kept for a tenant that holds none, and each holder at an
// equal part of what the holders may use: shares are checked against the holders of now, not of when a
// holding was taken, so a tenant that took more while alone gets nothing more until it is back under its
// share, and what it gives back goes to the others. Without tokens every request is the one tenant and has
// the whole of both.
type fair struct {
	maxSlots int
	maxBytes int64 // 0: unbounded
	shared   bool
	budget   *stage.Budget // the service's, charged with the bytes held

	mu    sync.Mutex
	slots int
	bytes int64
	per   map[[32]byte]*holding // by the token's digest, so a reload keeps a token's holdings
}

type holding struct {
	slots int
	bytes int64
}

func newFair(maxSlots int, maxBytes int64, shared bool, budget *stage.Budget) *fair {
	return &fair{maxSlots: max(1, maxSlots), maxBytes: maxBytes, shared: shared, budget: budget, per: map[[32]byte]*holding{}}
}

// acquire takes a slot and n bytes for t, or says why not; release gives both back.
func (f *fair) acquire(t *Tenant, n int64) (release func(), refusal string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.per[t.id]
	if h == nil {
		h = &holding{}
	}
	switch {
	case f.slots >= f.maxSlots:
		return nil, "more than " + strconv.Itoa(f.maxSlots) + " requests in flight"
	case f.maxBytes > 0 && f.bytes+n > f.maxBytes:
		return nil, "the request bodies in flight fill the ingress's part of the memory budget"
	}
	if f.shared && h.slots > 0 {
		holders := len(f.per)
		// Kept for a tenant holding nothing; the rest is split equally between the holders.
		slotPool := f.maxSlots - max(1, f.maxSlots/(holders+1))
		bytePool := f.maxBytes - f.maxBytes/int64(holders+1)
		switch {
		case f.slots >= slotPool || h.slots >= max(1, slotPool/holders):
			return nil, "this token has " + strconv.Itoa(h.slots) + " requests in flight, its share of ingress.maxConcurrent"
		case f.maxBytes > 0 && (f.bytes+n > bytePool || h.bytes+n > bytePool/int64(holders)):
			return nil, "this token's request bodies in flight fill its share of the ingress's memory"
		}
	}
	f.per[t.id] = h
	h.slots++
	h.bytes += n
	f.slots++
	f.bytes += n
	f.budget.Take(n)
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			h.slots--
			h.bytes -= n
			f.slots--
			f.bytes -= n
			if h.slots == 0 {
				delete(f.per, t.id)
			}
			f.budget.Give(n)
		})
	}, ""
}
