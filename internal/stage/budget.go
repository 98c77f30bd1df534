package stage

import (
	"context"
	"sync"
)

// Budget bounds the bytes an instance holds in fetched and in-flight records, across all its stages
// and partitions. A partition counts the bytes of each record it fetches and of the outputs it makes,
// and gives them back when the input is settled; while the budget is spent, partitions stop fetching
// (backpressure), so memory follows the budget whatever the record sizes are. Counting happens after
// the fact (a record is in memory once fetched), so a partition overruns the budget by at most one
// record plus the outputs of its batch.
type Budget struct {
	mu    sync.Mutex
	total int64
	used  int64
	freed chan struct{} // closed and replaced whenever bytes are given back
}

// NewBudget returns a budget of total bytes; total <= 0 is unlimited.
func NewBudget(total int64) *Budget {
	return &Budget{total: total, freed: make(chan struct{})}
}

// Full reports whether the budget is spent.
func (b *Budget) Full() bool {
	if b == nil || b.total <= 0 {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used >= b.total
}

// Wait blocks until the budget is not spent, or ctx ends (false).
func (b *Budget) Wait(ctx context.Context) bool {
	if b == nil || b.total <= 0 {
		return ctx.Err() == nil
	}
	for {
		b.mu.Lock()
		if b.used < b.total {
			b.mu.Unlock()
			return true
		}
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return false
		case <-freed:
		}
	}
}

// Take counts n bytes as held.
func (b *Budget) Take(n int64) {
	if b == nil || b.total <= 0 || n == 0 {
		return
	}
	b.mu.Lock()
	b.used += n
	b.mu.Unlock()
}

// Give returns n bytes.
func (b *Budget) Give(n int64) {
	if b == nil || b.total <= 0 || n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}

// Used is the bytes held now.
func (b *Budget) Used() int64 {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// Total is the budget's size (0: unlimited).
func (b *Budget) Total() int64 {
	if b == nil {
		return 0
	}
	return b.total
}
