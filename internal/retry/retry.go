// Package retry is the one backoff of every retry loop in cimstream (the stage runtime's, start-up's, the
// HTTP ingress's and the partition reader's) and the one periodic loop. It is a leaf, so the Kafka client
// can use it too.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is exponential from Min to Max (Min == Max: a fixed delay), with up to 20% jitter so that
// callers retrying the same broker do not do so in lockstep. The zero value of its state starts at Min.
type Backoff struct {
	Min, Max time.Duration
	next     time.Duration
}

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
func (b *Backoff) Wait(ctx context.Context) bool { return Sleep(ctx, b.Next()) }

// Sleep waits d or until ctx ends; it reports whether the full wait elapsed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Every calls fn every d until ctx ends or fn returns false; the first call is d after the start.
func Every(ctx context.Context, d time.Duration, fn func() bool) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if !fn() {
				return
			}
		}
	}
}
