package stage

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is the one retry policy of the runtime: exponential from Min to Max, with up to 20% jitter so
// that partitions retrying the same broker do not do so in lockstep.
type Backoff struct {
	Min, Max time.Duration
	next     time.Duration
}

// Retries is the policy for writes; Rejoins for topic listing, group membership and partition start.
var (
	Retries = Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	Rejoins = Backoff{Min: time.Second, Max: 30 * time.Second}
)

// Next returns the delay before the next attempt and doubles the one after.
func (b *Backoff) Next() time.Duration {
	if b.next < b.Min {
		b.next = b.Min
	}
	d := b.next
	b.next = min(2*b.next, b.Max)
	return d + time.Duration(rand.Int64N(int64(d)/5+1))
}

// Reset starts again from Min (after a success).
func (b *Backoff) Reset() { b.next = 0 }

// Wait sleeps the next delay or until ctx ends; it reports whether the full delay elapsed.
func (b *Backoff) Wait(ctx context.Context) bool { return sleep(ctx, b.Next()) }

// sleep waits d or until ctx ends; it reports whether the full wait elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
