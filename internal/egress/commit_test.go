package egress

import (
	"context"
	"errors"
	"testing"

	"github.com/cimstream/cimstream/internal/stage"
	"go.uber.org/zap"
)

func TestSettledMetadataRoundTrip(t *testing.T) {
	above := []int64{101, 102, 150, 10_000, 1 << 40}
	got := DecodeSettled(100, EncodeSettled(100, above))
	if len(got) != len(above) {
		t.Fatalf("decoded %v from %v", got, above)
	}
	for _, o := range above {
		if !got[o] {
			t.Errorf("offset %d lost", o)
		}
	}
	if EncodeSettled(100, nil) != "" || DecodeSettled(100, "") != nil || DecodeSettled(100, "other tool's metadata") != nil {
		t.Error("no settled offsets must give empty metadata, and foreign metadata none")
	}
	if d := DecodeSettled(5, EncodeSettled(100, above)); d[101] {
		t.Error("metadata read against another committed offset must not name the same offsets")
	}
}

// TestSettledMetadataFitsTheBroker: a long list is cut to fit offset.metadata.max.bytes, keeping the
// lowest offsets (the others are only delivered again).
func TestSettledMetadataFitsTheBroker(t *testing.T) {
	var above []int64
	for o := int64(1); o <= 5000; o++ {
		above = append(above, 1000+o*200)
	}
	meta := EncodeSettled(1000, above)
	if len(meta) > 4096 {
		t.Fatalf("metadata of %d bytes", len(meta))
	}
	got := DecodeSettled(1000, meta)
	if len(got) < 1000 || !got[1200] {
		t.Fatalf("kept %d offsets", len(got))
	}
	for o := range got {
		if o > above[len(got)-1] {
			t.Fatalf("offset %d kept while lower ones were cut", o)
		}
	}
}

// fakeGen records commits with metadata.
type fakeGen struct {
	commits []map[string]map[int]stage.OffsetMeta
	fail    bool
}

func (g *fakeGen) ID() int32                             { return 1 }
func (g *fakeGen) Assignments() []stage.Assignment       { return nil }
func (g *fakeGen) Start(fn func(ctx context.Context))    { fn(context.Background()) }
func (g *fakeGen) Commit(map[string]map[int]int64) error { return errors.New("plain commit used") }
func (g *fakeGen) CommitMetadata(o map[string]map[int]stage.OffsetMeta) error {
	if g.fail {
		return errors.New("coordinator moved")
	}
	g.commits = append(g.commits, o)
	return nil
}

// TestCommitterSendsOnlyChanges: unchanged partitions are not committed again; a failed commit is tried
// again at the next flush.
func TestCommitterSendsOnlyChanges(t *testing.T) {
	g := &fakeGen{}
	c := newCommitter(g, zap.NewNop())
	snap := map[string]map[int]stage.OffsetMeta{"t": {0: {Offset: 5}, 1: {Offset: 7, Metadata: "m"}}}
	c.flush(snap)
	c.flush(snap)
	if len(g.commits) != 1 {
		t.Fatalf("%d commits of one state", len(g.commits))
	}
	g.fail = true
	c.flush(map[string]map[int]stage.OffsetMeta{"t": {0: {Offset: 6}, 1: {Offset: 7, Metadata: "m"}}})
	g.fail = false
	c.flush(map[string]map[int]stage.OffsetMeta{"t": {0: {Offset: 6}, 1: {Offset: 7, Metadata: "m"}}})
	if len(g.commits) != 2 || len(g.commits[1]["t"]) != 1 || g.commits[1]["t"][0].Offset != 6 {
		t.Fatalf("commits %v: the failed one again, partition 0 only", g.commits)
	}
}

// TestKeyedCommitCarriesSettledAbove: with offset 0 pending and 1, 2 settled, the commit is offset 0
// with 1 and 2 in its metadata; a record skipped after a restart settles without delivery.
func TestKeyedCommitCarriesSettledAbove(t *testing.T) {
	g := newGate(4)
	var m moves
	k := newTestKeyed(g, 10, &m)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := int64(0); i < 3; i++ {
		k.add(ctx, rec(i, string(rune('a'+i))))
		expectStarted(t, g, i)
	}
	if _, ok := k.commit(); ok {
		t.Fatal("a commit before anything settled")
	}
	g.open(1)
	g.open(2)
	waitFor(t, "two settled", func() bool { return len(k.unsettled()) == 1 })
	if om, ok := k.commit(); !ok || om.Offset != 0 || om.Metadata != EncodeSettled(0, []int64{1, 2}) {
		t.Fatalf("commit %+v %v, want offset 0 with 1 and 2 settled above", om, ok)
	}
	k.skip(rec(3, "d"))
	g.open(0)
	waitFor(t, "all settled", func() bool { om, _ := k.commit(); return om.Offset == 4 })
	om, _ := k.commit()
	if om.Metadata != "" {
		t.Errorf("metadata %q with nothing settled above", om.Metadata)
	}
	select {
	case off := <-g.started:
		t.Fatalf("skipped offset %d was delivered", off)
	default:
	}
}
