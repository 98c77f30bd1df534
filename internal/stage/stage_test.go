package stage

import (
	"context"
	"testing"
	"time"
)

func TestOffsetsCommitTheContiguousPrefix(t *testing.T) {
	o := NewOffsets()
	for _, off := range []int64{10, 11, 12, 13} {
		o.Track(off)
	}
	if _, ok := o.Committable(); ok {
		t.Fatal("nothing settled: nothing to commit")
	}
	o.Settle(12)
	o.Settle(13)
	if _, ok := o.Committable(); ok {
		t.Fatal("10 and 11 are in flight: nothing to commit yet")
	}
	if !o.Settle(10) {
		t.Fatal("settling the oldest moves the commit")
	}
	if next, _ := o.Committable(); next != 11 {
		t.Fatalf("commit %d, want 11", next)
	}
	o.Settle(11)
	if next, _ := o.Committable(); next != 14 || o.InFlight() != 0 {
		t.Fatalf("commit %d with %d in flight, want 14 and 0", next, o.InFlight())
	}
}

func TestBudgetWaitsForBytesGivenBack(t *testing.T) {
	b := NewBudget(100)
	b.Take(100)
	if !b.Full() {
		t.Fatal("a spent budget is full")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if b.Wait(ctx) {
		t.Fatal("Wait returned while the budget was spent")
	}
	go func() { time.Sleep(20 * time.Millisecond); b.Give(1) }()
	if !b.Wait(context.Background()) {
		t.Fatal("Wait did not return when bytes were given back")
	}
	var unlimited *Budget
	if unlimited.Full() || !unlimited.Wait(context.Background()) {
		t.Fatal("a nil budget never blocks")
	}
}
