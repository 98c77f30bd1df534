package retry

import (
	"context"
	"testing"
	"time"
)

func TestBackoffGrowsToItsMaximumAndResets(t *testing.T) {
	b := Backoff{Min: 10 * time.Millisecond, Max: 40 * time.Millisecond}
	for i, want := range []time.Duration{10, 20, 40, 40} {
		want *= time.Millisecond
		if got := b.Next(); got < want || got > want+want/5 {
			t.Fatalf("delay %d = %v, want %v plus at most 20%% jitter", i, got, want)
		}
	}
	b.Reset()
	if d := b.Next(); d > 12*time.Millisecond {
		t.Fatalf("after Reset: %v", d)
	}
}

func TestWaitEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := Backoff{Min: time.Hour, Max: time.Hour}
	if b.Wait(ctx) {
		t.Fatal("Wait reported a full delay on an ended context")
	}
}

func TestEveryCallsUntilFalseOrTheContextEnds(t *testing.T) {
	calls := 0
	Every(context.Background(), time.Millisecond, func() bool { calls++; return calls < 3 })
	if calls != 3 {
		t.Fatalf("fn called %d times, want 3 (it stops at the first false)", calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	Every(ctx, time.Millisecond, func() bool { t.Fatal("called after the context ended"); return true })
}
