package tool

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/cimstream/cimstream/internal/stream"
)

// The replay keeps its books in the dead-letter topic itself, beside the dead letters they speak of:
// before producing a batch it writes an "intent" marker (the dead letters about to be replayed, and
// the end offset of every partition of each target topic at that moment), and after the broker
// acknowledged every replayed record a "done" marker. Markers go to the dead letters' own partition,
// so reading a partition gives both. A dead letter named by a done marker is never replayed again, by
// any later run whatever its filters, and neither is a copy of it: markers name each dead letter's
// original record (Letter.Origin), which two copies of one dead letter share.
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
// Of two runs that start together, at least the later writer sees the other's intent. Every marker names
// the run that wrote it, so a run also sees another that recovered its own batch: a run stalled longer
// than the window, whose batch another run took for crashed, finds that before its done marker and
// stops with ErrTakenOver (the records it was writing then may be in the target twice).

type intentMarker struct {
	ID  string `json:"id"`
	Run string `json:"run,omitempty"` // the run that wrote it
	// Offsets are the dead letters of the batch; Origins their originals (Letter.Origin), in the same order.
	Offsets []int64                  `json:"offsets"`
	Origins []string                 `json:"origins,omitempty"`
	Targets map[string]map[int]int64 `json:"targets"` // topic → partition → end offset before the write
}

type doneMarker struct {
	Intent    string   `json:"intent"`
	Run       string   `json:"run,omitempty"` // the run that wrote it: for a recovered batch, the recovering one
	Offsets   []int64  `json:"offsets"`
	Origins   []string `json:"origins,omitempty"`
	Recovered bool     `json:"recovered,omitempty"`
}

// ledger is what the markers of the dead-letter topic say.
type ledger struct {
	// replayed holds the originals (Letter.Origin) of the dead letters replayed: a copy of a replayed
	// dead letter (the pipeline wrote it twice) is replayed already.
	replayed map[string]bool
	// origins maps a partition's dead-letter offsets to their originals, for markers without Origins.
	origins map[int]map[int64]string
	// letters holds, by Ref, what the replay count and the recovery check a dead letter against.
	letters map[string]letterFacts
	// doneIn holds, by intent id, the dead letters (partition, offset) its done markers name.
	doneIn map[string]map[int]map[int64]bool
	open   []openIntent
}

// letterFacts are what the ledger keeps of each dead letter: its original, a digest of its key and
// value, and the replay it claims to come from (the dead letter and the batch).
type letterFacts struct {
	origin      string
	digest      [16]byte
	claim       string
	claimIntent string
	partition   int
	offset      int64
}

// digest identifies a record's key and value (SHA-256, cut to 16 bytes).
func digest(key, value []byte) [16]byte {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(key)))
	h.Write(n[:])
	h.Write(key)
	h.Write(value)
	var d [16]byte
	copy(d[:], h.Sum(nil))
	return d
}

// replays is how many times the record of the dead letter at ref was replayed and failed again, counted
// from the dead-letter topic alone: each link is the dead letter the record claims to be a replay of,
// in this topic, named with its offset by the done marker of the batch the record claims wrote it. The
// batch's id is a UUID written nowhere but in the dead-letter topic, so a connector cannot make its
// record pass for a replay (a forged count or claim adds nothing), while a replayed record that fails in
// another stage (its key and value changed) still counts. At most limit; a cycle ends the count.
func (l ledger) replays(ref string, limit int) int {
	n := 0
	seen := map[string]bool{ref: true}
	for n < limit {
		cur, ok := l.letters[ref]
		if !ok || cur.claim == "" || cur.claimIntent == "" || seen[cur.claim] {
			break
		}
		prev, ok := l.letters[cur.claim]
		if !ok || !l.doneIn[cur.claimIntent][prev.partition][prev.offset] {
			break
		}
		n++
		seen[cur.claim] = true
		ref = cur.claim
	}
	return n
}

// counted is l with its ReplayCount from the ledger (see replays).
func (books ledger) counted(l Letter, topic string, limit int) Letter {
	l.ReplayCount = books.replays(Ref(topic, l.Record.Partition, l.Record.Offset), limit)
	return l
}

// openIntent is an intent without its done marker, its partition and when it was written.
type openIntent struct {
	intentMarker
	partition int
	at        time.Time
}

// origin is the original of the dead letter at offset of partition, as a marker names it.
func (l ledger) origin(topic string, partition int, offset int64, origins []string, i int) string {
	if i < len(origins) && origins[i] != "" {
		return origins[i]
	}
	if o, ok := l.origins[partition][offset]; ok {
		return o
	}
	return originOf(topic, partition, offset)
}

// readLedger reads the markers of every partition of the dead-letter topic in [first, end).
func readLedger(ctx context.Context, b Broker, topic string, ranges []Range) (ledger, error) {
	l := ledger{replayed: map[string]bool{}, origins: map[int]map[int64]string{}, letters: map[string]letterFacts{},
		doneIn: map[string]map[int]map[int64]bool{}}
	for _, r := range ranges {
		if r.End <= r.First {
			continue
		}
		origins := map[int64]string{}
		l.origins[r.Partition] = origins
		err := b.Read(ctx, topic, r.Partition, r.First, r.End, func(rec stream.Record) error {
			kind, ok := markerKind(rec)
			if !ok {
				if d, ok := Parse(rec); ok {
					origins[rec.Offset] = d.Origin(topic)
					l.letters[Ref(topic, r.Partition, rec.Offset)] = letterFacts{origin: d.Origin(topic),
						digest: digest(rec.Key, rec.Value), claim: d.ReplayOf, claimIntent: d.ReplayIntent,
						partition: r.Partition, offset: rec.Offset}
				}
				return nil
			}
			switch kind {
			case "intent":
				var m intentMarker
				if json.Unmarshal(rec.Value, &m) == nil && m.ID != "" {
					l.open = append(l.open, openIntent{m, r.Partition, rec.Time})
				}
			case "done":
				var m doneMarker
				if json.Unmarshal(rec.Value, &m) == nil {
					for i, o := range m.Offsets {
						l.replayed[l.origin(topic, r.Partition, o, m.Origins, i)] = true
						l.markDone(m.Intent, r.Partition, o)
					}
					l.open = slices.DeleteFunc(l.open, func(i openIntent) bool { return i.ID == m.Intent })
				}
			}
			return nil
		})
		if err != nil {
			return ledger{}, fmt.Errorf("read replay markers of %s/%d: %w", topic, r.Partition, err)
		}
	}
	return l, nil
}

func (l ledger) markDone(intent string, partition int, offset int64) {
	if l.doneIn[intent] == nil {
		l.doneIn[intent] = map[int]map[int64]bool{}
	}
	if l.doneIn[intent][partition] == nil {
		l.doneIn[intent][partition] = map[int64]bool{}
	}
	l.doneIn[intent][partition][offset] = true
}

// recover finds which dead letters of an open intent reached their target, by reading every target
// partition from its recorded end offset up to its end now. A record there counts only when it names
// the dead letter and the intent (a UUID that exists only in the dead-letter topic) and holds the dead
// letter's key and value: a connector writing to the same topic can name any dead letter in a header,
// but cannot make one that was not written look replayed.
func (books ledger) recoverIntent(ctx context.Context, b Broker, topic string, partition int, in intentMarker) ([]int64, error) {
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
			// To the high watermark, not r.End (the last stable offset): the batch's records are
			// written without a transaction, and one a connector keeps open on the partition would hide
			// them from a read_committed read, and the batch would be replayed twice.
			err := b.ReadWritten(ctx, target, r.Partition, from, func(rec stream.Record) error {
				of, _ := rec.Header(HeaderReplayOf)
				intent, _ := rec.Header(HeaderReplayIntent)
				if o, ok := want[string(of)]; ok && string(intent) == in.ID && books.letters[string(of)].digest == digest(rec.Key, rec.Value) {
					found[o] = true
				}
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("recover interrupted replay %s: %w", in.ID, err)
			}
		}
	}
	out := slices.AppendSeq(make([]int64, 0, len(found)), maps.Keys(found)) // never nil: the done marker's "offsets" is a list
	slices.Sort(out)
	return out, nil
}

func markerOutput(topic string, partition int, kind string, v any, now time.Time) stream.Output {
	value, _ := json.Marshal(v) // plain structs of strings and numbers
	return stream.Output{Topic: topic, Partition: partition, Value: value, Time: now,
		Headers: []stream.Header{{Key: HeaderMarker, Value: []byte(kind)}}}
}
