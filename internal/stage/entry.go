package stage

import (
	"context"
	"sync"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/stream"
)

// EntryGuard renames the reserved headers of records read from an entry topic (one written outside
// cimstream: a channel topic, the CCM's outbound topic), so nothing downstream (a handler, its outputs, a
// dead letter of the record) carries a header in cimstream's namespace that cimstream did not write.
// Each renamed header is counted; the first of each topic is logged.
type EntryGuard struct {
	Stage    string
	Observer Observer
	Log      *zap.Logger
	logged   sync.Map // topics whose first renamed header was logged
}

// Reader wraps r so every record it returns has its reserved headers renamed.
func (g *EntryGuard) Reader(r Reader) Reader { return entryReader{Reader: r, guard: g} }

type entryReader struct {
	Reader
	guard *EntryGuard
}

func (e entryReader) Fetch(ctx context.Context) (stream.Record, error) {
	rec, err := e.Reader.Fetch(ctx)
	if err != nil {
		return rec, err
	}
	var n int
	if rec.Headers, n = stream.RenameReserved(rec.Headers); n > 0 {
		e.guard.renamed(rec, n)
	}
	return rec, nil
}

// Position passes the wrapped reader's Positioner through (-1 when it has none).
func (e entryReader) Position() int64 {
	if p, ok := e.Reader.(Positioner); ok {
		return p.Position()
	}
	return -1
}

func (g *EntryGuard) renamed(rec stream.Record, n int) {
	g.Observer.RenamedHeaders(g.Stage, rec.Topic, n)
	if _, seen := g.logged.LoadOrStore(rec.Topic, true); !seen {
		g.Log.Warn("a record carried headers in cimstream's namespace: renamed with prefix "+stream.RenamedPrefix+
			" (logged once per topic; counted in cimstream_reserved_headers_renamed_total)",
			zap.String("topic", rec.Topic), zap.Int("partition", rec.Partition), zap.Int64("offset", rec.Offset))
	}
}
