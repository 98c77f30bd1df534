package inbound

import (
	"slices"

	"github.com/cimstream/cimstream/internal/stream"
)

// coalesceChangelog keeps, of the changelog records a batch's results write, only the last one of
// each key (a tombstone counts as a state), and drops the earlier ones; every other output (CCM
// records, events, dead letters) and the order of what is kept stay as they are. It returns how many
// records it dropped.
//
// Why it is safe (docs/inbound.md, "Coalesced changelog"): the runtime commits the batch's offsets only
// once every output of the batch is acknowledged, so a crash replays the whole batch from the state
// its keys had before it, which replay-stable decisions handle as they handle a crash between a CCM
// write and its changelog write. An input rejected by Process has no outputs: the state of its key
// written last is the latest one that exists. Only the handler's own batch is coalesced; the records of
// Tick (expiries, tombstones) come after it and are written as they are.
func coalesceChangelog(results []stream.Result, changelog string) int {
	var seen map[string]struct{}
	dropped := 0
	for i := len(results) - 1; i >= 0; i-- {
		outs := results[i].Outputs
		for j := len(outs) - 1; j >= 0; j-- {
			if outs[j].Topic != changelog {
				continue
			}
			if seen == nil {
				seen = make(map[string]struct{}, len(results))
			}
			if _, later := seen[string(outs[j].Key)]; later {
				outs = slices.Delete(outs, j, j+1)
				dropped++
				continue
			}
			seen[string(outs[j].Key)] = struct{}{}
		}
		results[i].Outputs = outs
	}
	return dropped
}
