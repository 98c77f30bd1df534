package stage

import (
	"context"
	"errors"
	"testing"
	"time"

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

// metaGen records commits with metadata.
type metaGen struct {
	commits []map[string]map[int]OffsetMeta
	fail    bool
}

func (g *metaGen) ID() int32                          { return 1 }
func (g *metaGen) Assignments() []Assignment          { return nil }
func (g *metaGen) Start(fn func(ctx context.Context)) { fn(context.Background()) }
func (g *metaGen) Commit(o map[string]map[int]int64) error {
	m := map[string]map[int]OffsetMeta{}
	for topic, parts := range o {
		m[topic] = map[int]OffsetMeta{}
		for p, off := range parts {
			m[topic][p] = OffsetMeta{Offset: off}
		}
	}
	return g.CommitMetadata(m)
}
func (g *metaGen) CommitMetadata(o map[string]map[int]OffsetMeta) error {
	if g.fail {
		return errors.New("coordinator moved")
	}
	g.commits = append(g.commits, o)
	return nil
}

// TestCommitterSendsOnlyChanges: unchanged checkpoints are not committed again; a failed commit is tried
// again at the next flush.
func TestCommitterSendsOnlyChanges(t *testing.T) {
	g := &metaGen{}
	c := newCommitter(g, zap.NewNop())
	p0, p1 := newCheckpoint(nil), newCheckpoint(nil)
	c.poll(Assignment{Topic: "t", Partition: 0}, p0)
	c.poll(Assignment{Topic: "t", Partition: 1}, p1)
	for off := int64(0); off < 5; off++ {
		p0.skip(off, time.Time{})
	}
	p1.track(6, time.Time{})
	p1.skip(7, time.Time{})
	c.flush()
	c.flush()
	if len(g.commits) != 1 || g.commits[0]["t"][0].Offset != 5 || g.commits[0]["t"][1] != (OffsetMeta{Offset: 6, Metadata: EncodeSettled(6, []int64{7})}) {
		t.Fatalf("%d commits of one state: %v", len(g.commits), g.commits)
	}
	g.fail = true
	p0.skip(5, time.Time{})
	c.flush()
	g.fail = false
	c.flush()
	if len(g.commits) != 2 || len(g.commits[1]["t"]) != 1 || g.commits[1]["t"][0].Offset != 6 {
		t.Fatalf("commits %v: the failed one again, partition 0 only", g.commits)
	}
	if got := c.oldest(); !got.IsZero() {
		t.Fatalf("oldest %v with offset 6 tracked at the zero time", got)
	}
}

// TestCheckpointCarriesSettledAbove: with offset 0 pending and 1, 2 settled, the commit is offset 0
// with 1 and 2 in its metadata; a record skipped after a restart settles at once; the prior commit's
// settled offsets stay listed until the committed offset passes them.
func TestCheckpointCarriesSettledAbove(t *testing.T) {
	cp := newCheckpoint(map[int64]bool{9: true})
	if _, ok := cp.commit(); ok {
		t.Fatal("a commit before anything was tracked")
	}
	for i := int64(0); i < 3; i++ {
		cp.track(i, time.Unix(1000+i, 0))
	}
	if om, ok := cp.commit(); !ok || om.Offset != 0 || om.Metadata != EncodeSettled(0, []int64{9}) {
		t.Fatalf("commit %+v %v, want offset 0 keeping the prior 9", om, ok)
	}
	cp.settle(1)
	cp.settle(2)
	if om, ok := cp.commit(); !ok || om.Offset != 0 || om.Metadata != EncodeSettled(0, []int64{1, 2, 9}) {
		t.Fatalf("commit %+v %v, want offset 0 with 1, 2 and 9 settled above", om, ok)
	}
	if t0, ok := cp.oldest(); !ok || !t0.Equal(time.Unix(1000, 0)) {
		t.Fatalf("oldest %v %v, want offset 0's time", t0, ok)
	}
	cp.skip(3, time.Time{})
	cp.settle(0)
	if om, _ := cp.commit(); om.Offset != 4 || om.Metadata != EncodeSettled(4, []int64{9}) {
		t.Fatalf("commit %+v, want 4 with 9 above", om)
	}
	cp.setPosition(12) // the reader passed markers up to 12: past the prior 9 too
	if om, _ := cp.commit(); om.Offset != 12 || om.Metadata != "" {
		t.Errorf("commit %+v, want 12 with nothing above", om)
	}
	if _, ok := cp.oldest(); ok {
		t.Error("nothing should be pending")
	}
}
