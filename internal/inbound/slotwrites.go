package inbound

import (
	"context"

	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
)

// slotWriter is a sessions-stage handler that shares its slot (session table, changelog and CCM
// partitions) with the other handlers of the partition number: the repartition topic's and the channel
// topics' of the fast path.
type slotWriter interface {
	lock(ctx context.Context, batch []stream.Record)
	unlock()
}

// slotWrites is the sessions stage's middleware: a handler holds its slot's write lock from before it
// processes a batch until that batch's outputs (and the Tick's) are settled or abandoned, so the outputs
// of the handlers sharing a slot land in the order their inputs were applied.
func slotWrites(h stage.Handler, next stage.Step) stage.Step {
	w, ok := h.(slotWriter)
	if !ok {
		return next
	}
	return func(ctx context.Context, batch []stream.Record) bool {
		w.lock(ctx, batch)
		defer w.unlock()
		return next(ctx, batch)
	}
}
