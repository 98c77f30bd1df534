package ingress

import (
	"crypto/sha256"
	"testing"
)

func tenantOf(name string) *Tenant { return &Tenant{id: sha256.Sum256([]byte(name))} }

// fill acquires for t until refused and returns how many it got.
func fill(f *fair, t *Tenant, n int64) int {
	got := 0
	for {
		if _, why := f.acquire(t, n); why != "" {
			return got
		}
		got++
	}
}

// TestFairShareLeavesRoomForATokenHoldingNothing: with maxConcurrent 12 and tokens A, B, C arriving one
// after another and taking all they may, token D's first request still finds a slot; and once the early
// ones release, the later ones get their equal share.
func TestFairShareLeavesRoomForATokenHoldingNothing(t *testing.T) {
	f := newFair(12, 0, true, nil)
	a, b, c, d := tenantOf("A"), tenantOf("B"), tenantOf("C"), tenantOf("D")
	got := []int{fill(f, a, 0), fill(f, b, 0), fill(f, c, 0)}
	if f.slots >= f.maxSlots {
		t.Fatalf("A, B, C hold %v: every slot, nothing left for a fourth token", got)
	}
	if _, why := f.acquire(d, 0); why != "" {
		t.Fatalf("A, B, C hold %v; D's first request refused: %s", got, why)
	}
	for _, x := range []*Tenant{a, b, c, d} {
		if h := f.per[x.id]; h == nil || h.slots == 0 {
			t.Errorf("a token holds nothing: %v", got)
		}
	}
}

// TestFairByteShareLeavesRoomForATokenHoldingNothing: the same for the bytes of bodies in flight.
func TestFairByteShareLeavesRoomForATokenHoldingNothing(t *testing.T) {
	f := newFair(1000, 12*100, true, nil)
	a, b, c, d := tenantOf("A"), tenantOf("B"), tenantOf("C"), tenantOf("D")
	got := []int{fill(f, a, 100), fill(f, b, 100), fill(f, c, 100)}
	if _, why := f.acquire(d, 100); why != "" {
		t.Fatalf("A, B, C hold %v bodies of 100 bytes of 1200; D's first refused: %s", got, why)
	}
}

// TestFairSharesConvergeOnceHoldersRelease: a token that took more while alone gets no more until it is
// under its share, so the slots it gives back go to the others.
func TestFairSharesConvergeOnceHoldersRelease(t *testing.T) {
	f := newFair(12, 0, true, nil)
	a, b := tenantOf("A"), tenantOf("B")
	var releases []func()
	for {
		r, why := f.acquire(a, 0)
		if why != "" {
			break
		}
		releases = append(releases, r)
	}
	fill(f, b, 0)
	for _, r := range releases {
		r()
		if _, why := f.acquire(a, 0); why == "" && f.per[a.id].slots > f.per[b.id].slots+1 {
			t.Fatalf("A holds %d, B %d: A took back a slot above its share", f.per[a.id].slots, f.per[b.id].slots)
		}
		fill(f, b, 0)
	}
	if ha, hb := f.per[a.id].slots, f.per[b.id].slots; hb < ha {
		t.Errorf("after A released, A holds %d and B %d", ha, hb)
	}
}
