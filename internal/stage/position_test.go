package stage_test

import (
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/stage"
)

// Offsets a reader passed without records (transaction markers, a transaction's aborted records) are
// committed once every record fetched is settled, through the entry guard too, so the partition's lag
// drains to zero.
func TestCommitMovesPastOffsetsThatAreNoRecords(t *testing.T) {
	b := newBroker("in", "out", "dlq")
	p := b.TxnProducer()
	p.Begin()
	p.Send("in", 0, "a", "a:1") // offset 0
	p.Send("in", 0, "b", "b:2") // 1
	p.Commit()                  // marker at 2
	p.Begin()
	p.Send("in", 0, "c", "c:3") // 3, aborted
	p.Abort()                   // marker at 4
	start(t, b, b, echo, func(c *stage.Config) { c.Entry = func(string) bool { return true } })
	if !eventually(func() bool { return committed(b, "in", 0) == 5 }) {
		t.Fatalf("committed %d, want 5 (past the markers at 2 and 4 and the aborted record at 3)", committed(b, "in", 0))
	}
	if got := written(b, "out"); got != "a:1,b:2" {
		t.Errorf("outputs %v, want the two committed records", got)
	}
}

// A partition without a committed offset starts at the first one (kafka.FirstOffset); the reader
// resolves it in the fetch that returns its first record, so the first position the runtime sees is
// already past that batch. The batch is committed all the same (a stop and restart must not process it
// again).
func TestCommitFirstBatchOfStartAtFirstOffset(t *testing.T) {
	b := newBroker("in", "out", "dlq")
	produce(t, b, inputs("a:1", "b:2")) // offsets 0 and 1, both in the first batch
	stop := start(t, b, b, echo, func(c *stage.Config) { c.Linger = 20 * time.Millisecond })
	if !eventually(func() bool { return written(b, "out") == "a:1,b:2" }) {
		t.Fatalf("outputs %v, want the two records", written(b, "out"))
	}
	time.Sleep(100 * time.Millisecond) // a few commit intervals
	stop()                             // a graceful stop commits what was settled
	if got := committed(b, "in", 0); got != 2 {
		t.Fatalf("committed %d, want 2 (past the first batch)", got)
	}
}
