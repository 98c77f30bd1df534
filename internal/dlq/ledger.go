package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cimstream/cimstream/internal/stream"
)

// The replay keeps its books in the dead-letter topic itself, beside the dead letters they speak of:
// before producing a batch it writes an "intent" marker (the dead letters about to be replayed, and
// the end offset of every partition of each target topic at that moment), and after the broker
// acknowledged every replayed record a "done" marker. Markers go to the dead letters' own partition,
// so reading a partition gives both. A dead letter named by a done marker is never replayed again, by
// any later run whatever its filters.
//
// A run that stopped between the two markers (a crash, a failed write) leaves an open intent. The next
// run closes it before replaying anything: it reads each target partition from the recorded end
// offset, finds the records whose HeaderReplayOf names a dead letter of the intent (those were
// written), and writes a done marker for exactly those. The others were not written and are replayed
// normally (a deleted target topic has none). So a dead letter is neither lost nor replayed twice,
// provided one replay runs at a time.
//
// Two guards keep runs apart. An open intent younger than Replay.ActiveWindow may belong to a run still
// writing its batch, so a run that finds one refuses to start (ErrBusy) rather than recover it. And
// after writing its own intent, before producing, a run reads what reached the partition since it
// started: a marker of another run means two replays overlap, and it stops (ErrBusy) before producing.
// Of two runs that start together, at least the later writer sees the other's intent.

type intentMarker struct {
	ID      string                   `json:"id"`
	Offsets []int64                  `json:"offsets"`
	Targets map[string]map[int]int64 `json:"targets"` // topic → partition → end offset before the write
}

type doneMarker struct {
	Intent    string  `json:"intent"`
	Offsets   []int64 `json:"offsets"`
	Recovered bool    `json:"recovered,omitempty"`
}

// ledger is what the markers of one partition say.
type ledger struct {
	replayed map[int64]bool
	open     []openIntent
}

// openIntent is an intent without its done marker, and when it was written.
type openIntent struct {
	intentMarker
	at time.Time
}

// readLedger reads the markers of one dead-letter partition in [first, end).
func readLedger(ctx context.Context, b Broker, topic string, r Range) (ledger, error) {
	l := ledger{replayed: map[int64]bool{}}
	err := b.Read(ctx, topic, r.Partition, r.First, r.End, func(rec stream.Record) error {
		kind, ok := rec.Header(HeaderMarker)
		if !ok {
			return nil
		}
		switch string(kind) {
		case "intent":
			var m intentMarker
			if json.Unmarshal(rec.Value, &m) == nil && m.ID != "" {
				l.open = append(l.open, openIntent{m, rec.Time})
			}
		case "done":
			var m doneMarker
			if json.Unmarshal(rec.Value, &m) == nil {
				for _, o := range m.Offsets {
					l.replayed[o] = true
				}
				l.open = slices.DeleteFunc(l.open, func(i openIntent) bool { return i.ID == m.Intent })
			}
		}
		return nil
	})
	if err != nil {
		return ledger{}, fmt.Errorf("read replay markers of %s/%d: %w", topic, r.Partition, err)
	}
	return l, nil
}

// recover finds which dead letters of an open intent reached their target, by reading every target
// partition from its recorded end offset up to its end now.
func recoverIntent(ctx context.Context, b Broker, topic string, partition int, in intentMarker) ([]int64, error) {
	want := map[string]int64{}
	for _, o := range in.Offsets {
		want[Ref(topic, partition, o)] = o
	}
	found := map[int64]bool{}
	for target, ends := range in.Targets {
		ranges, err := b.Ranges(ctx, target)
		if errors.Is(err, ErrNoTopic) {
			// The target was deleted since: whatever the batch wrote there went with it, so none of its
			// dead letters counts as replayed there, and they are replayable again.
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("recover interrupted replay %s: %w", in.ID, err)
		}
		for _, r := range ranges {
			from, ok := ends[r.Partition]
			if !ok {
				from = r.First // a partition added since: everything in it is new
			}
			from = max(from, r.First)
			err := b.Read(ctx, target, r.Partition, from, r.End, func(rec stream.Record) error {
				if of, ok := rec.Header(HeaderReplayOf); ok {
					if o, ok := want[string(of)]; ok {
						found[o] = true
					}
				}
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("recover interrupted replay %s: %w", in.ID, err)
			}
		}
	}
	out := make([]int64, 0, len(found))
	for o := range found {
		out = append(out, o)
	}
	slices.Sort(out)
	return out, nil
}

func markerOutput(topic string, partition int, kind string, v any, now time.Time) stream.Output {
	value, _ := json.Marshal(v) // plain structs of strings and numbers
	return stream.Output{Topic: topic, Partition: partition, Value: value, Time: now,
		Headers: []stream.Header{{Key: HeaderMarker, Value: []byte(kind)}}}
}
