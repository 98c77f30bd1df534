package stage

import (
	"context"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/stream"
)

// entryReader renames the reserved headers of records read from an entry topic (Config.Entry), so
// nothing downstream (the handler, its outputs, a dead letter of the record) carries a header in
// cimstream's namespace that cimstream did not write.
type entryReader struct {
	Reader
	runner *Runner
}

func (e entryReader) Fetch(ctx context.Context) (stream.Record, error) {
	rec, err := e.Reader.Fetch(ctx)
	if err != nil {
		return rec, err
	}
	var n int
	if rec.Headers, n = stream.RenameReserved(rec.Headers); n > 0 {
		e.runner.renamed(rec, n)
	}
	return rec, nil
}

// renamed counts n renamed headers of rec and logs the first of each source topic.
func (r *Runner) renamed(rec stream.Record, n int) {
	r.cfg.Observer.RenamedHeaders(r.cfg.Name, rec.Topic, n)
	if _, seen := r.renamedLogged.LoadOrStore(rec.Topic, true); !seen {
		r.log.Warn("a record carried headers in cimstream's namespace: renamed with prefix "+stream.RenamedPrefix+
			" (logged once per topic; counted in cimstream_reserved_headers_renamed_total)",
			zap.String("topic", rec.Topic), zap.Int("partition", rec.Partition), zap.Int64("offset", rec.Offset))
	}
}
