package stage

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/deadletter"
	"github.com/cimstream/cimstream/internal/stream"
)

// markersReader is a reader whose last offsets are no records (a transaction's commit markers): once its
// records are fetched it stands at end.
type markersReader struct {
	*fakeReader
	end int64
}

func (r markersReader) Position() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.recs) > 0 {
		return r.recs[0].Offset
	}
	return r.end
}

// Offsets a reader passed without records (markers after the last record) are committed once every
// record fetched is settled, through the entry guard too, so the partition's lag drains to zero.
func TestCommitMovesPastOffsetsThatAreNoRecords(t *testing.T) {
	gen := newGeneration(Assignment{Topic: "in", Partition: 0})
	recs := records("a:1", "b:2") // offsets 0 and 1; 2 and 3 are markers
	broker := &fakeBroker{gen: gen, readers: map[string]*fakeReader{"in": {recs: recs}},
		wrap: func(r Reader) Reader { return markersReader{fakeReader: r.(*fakeReader), end: 4} }}
	cfg := Config{
		Name: "test", Pipeline: "inbound", GroupID: "g",
		Topics:          func(context.Context) ([]string, error) { return []string{"in"}, nil },
		RefreshInterval: time.Hour,
		NewHandler:      func(context.Context, string, int) (Handler, error) { return echo, nil },
		BatchSize:       3, Linger: time.Millisecond, CommitInterval: 20 * time.Millisecond,
		DeadLetters: deadletter.Builder{Topic: "dlq"},
		Entry:       func(string) bool { return true },
	}
	sink := &fakeSink{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = New(cfg, broker, sink, zap.NewNop()).Run(ctx) }()
	defer func() { cancel(); gen.revoke(); <-done }()
	if !eventually(func() bool { return gen.committed("in", 0) == 4 }) {
		t.Fatalf("committed %d, want 4 (past the markers at 2 and 3)", gen.committed("in", 0))
	}
	if got := values(sink.topics()["out"]); len(got) != 2 {
		t.Errorf("outputs %v, want the two records", got)
	}
}

// resolvingReader starts at the first offset (kafka.FirstOffset, -2) and resolves it in the fetch that
// returns its first records, as kafkaclient.Reader does: its position is negative until then.
type resolvingReader struct {
	*fakeReader
	end      int64
	resolved *atomic.Bool
}

func (r resolvingReader) Fetch(ctx context.Context) (stream.Record, error) {
	rec, err := r.fakeReader.Fetch(ctx)
	if err == nil {
		r.resolved.Store(true)
	}
	return rec, err
}

func (r resolvingReader) Position() int64 {
	if !r.resolved.Load() {
		return -2
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.recs) > 0 {
		return r.recs[0].Offset
	}
	return r.end
}

// A partition without a committed offset starts at the first one; when the reader resolves it and
// returns records in the same fetch, the first position the runtime sees is already past that batch.
// The batch is committed all the same (a stop and restart must not process it again).
func TestCommitFirstBatchOfStartAtFirstOffset(t *testing.T) {
	gen := newGeneration(Assignment{Topic: "in", Partition: 0, Offset: -2})
	recs := records("a:1", "b:2") // offsets 0 and 1, both in the first batch
	broker := &fakeBroker{gen: gen, readers: map[string]*fakeReader{"in": {recs: recs}},
		wrap: func(r Reader) Reader {
			return resolvingReader{fakeReader: r.(*fakeReader), end: 2, resolved: new(atomic.Bool)}
		}}
	cfg := Config{
		Name: "test", Pipeline: "inbound", GroupID: "g",
		Topics:          func(context.Context) ([]string, error) { return []string{"in"}, nil },
		RefreshInterval: time.Hour,
		NewHandler:      func(context.Context, string, int) (Handler, error) { return echo, nil },
		BatchSize:       3, Linger: 20 * time.Millisecond, CommitInterval: 20 * time.Millisecond,
		DeadLetters: deadletter.Builder{Topic: "dlq"},
	}
	sink := &fakeSink{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = New(cfg, broker, sink, zap.NewNop()).Run(ctx) }()
	if !eventually(func() bool { return len(values(sink.topics()["out"])) == 2 }) {
		t.Fatalf("outputs %v, want the two records", values(sink.topics()["out"]))
	}
	time.Sleep(100 * time.Millisecond) // a few commit intervals
	// A graceful stop commits what was settled.
	cancel()
	<-done
	gen.revoke()
	if got := gen.committed("in", 0); got != 2 {
		t.Fatalf("committed %d, want 2 (past the first batch)", got)
	}
}
