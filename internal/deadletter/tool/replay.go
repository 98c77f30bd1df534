package tool

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/cimstream/cimstream/internal/egress"
	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/pkg/cim"
)

// Outcomes of a dead letter in a replay.
const (
	Replayed        = "replayed"
	WouldReplay     = "would_replay" // a dry run's replayed
	StillInvalid    = "still_invalid"
	Guarded         = "guarded"
	AlreadyReplayed = "already_replayed"
	Unreplayable    = "unreplayable" // the value was truncated, no target is known, or the target refused it
	Filtered        = "filtered"
)

// DefaultMaxReplays is the loop guard's default: a record replayed this many times is not replayed again.
const DefaultMaxReplays = 3

// Replay configures one replay run.
type Replay struct {
	Topic  string // the dead-letter topic
	Filter Filter
	// To is the topic to replay to; empty: each dead letter's source topic.
	To string
	// MaxReplays is the loop guard: a dead letter whose original was already replayed this many times
	// is refused (0: DefaultMaxReplays).
	MaxReplays int
	DryRun     bool
	// Validate re-validates a dead letter's value for the pipeline that reads target; violations keep it
	// from being replayed. Required.
	Validate func(l Letter, target string) cim.Violations
	// BatchSize bounds the records produced between two markers (0: 100).
	BatchSize int
	// OnDecision, when set, is told the outcome of every dead letter the filter selects.
	OnDecision func(Decision)
	// OnProgress, when set, is called after every record read.
	OnProgress func(Progress)
	Now        func() time.Time
	// ActiveWindow is how long an unfinished batch may belong to a run still writing it (longer than an
	// intent, a batch and a done marker take to write): a younger one makes the run refuse to start with
	// ErrBusy; an older one is recovered (0: DefaultActiveWindow).
	ActiveWindow time.Duration
	// Partition chooses the partition key of a replayed record (nil: its key). The inbound repartition
	// topic is partitioned by customer, not by its session key (inbound.Partitioner).
	Partition func(target string, key []byte) []byte
	// Own reports whether a topic is written by cimstream alone (the repartition topic): a dead letter
	// from it keeps its original cimstream.source.* headers when replayed, the sessions stage's input. Any
	// other cimstream.* header an original carries (a dead letter written before entries renamed them) is
	// renamed on replay, as the entries would (nil: no topic is).
	Own func(topic string) bool

	st *runState
}

// DefaultActiveWindow is Replay.ActiveWindow's default. The age of an intent is its record timestamp
// (the writing run's clock, or the broker's) against the reading run's clock, so the window covers
// clock skew between machines and a run stalled for minutes (a paused process, a broker slow to answer
// several produce requests of one batch), not just the few seconds a batch normally takes. A run
// stalled longer than this can be taken over; it then stops with ErrTakenOver.
const DefaultActiveWindow = 10 * time.Minute

// ErrBusy is returned (wrapped) when another replay of the same dead-letter topic may be running.
var ErrBusy = errors.New("another replay of this dead-letter topic may be running")

// Decision is what a replay did (or, in a dry run, would do) with one selected dead letter.
type Decision struct {
	Outcome    string
	Letter     Letter
	Target     string
	Violations cim.Violations // why it is still invalid
	Reason     string         // why it is unreplayable or guarded
}

// Account counts every dead letter a run decided, each in exactly one outcome, so that
// Read == Replayed + StillInvalid + Guarded + AlreadyReplayed + Unreplayable + Filtered + Unfinished.
type Account struct {
	Read            int `json:"read"`
	Replayed        int `json:"replayed"` // in a dry run: would be replayed
	StillInvalid    int `json:"stillInvalid"`
	Guarded         int `json:"guarded"`
	AlreadyReplayed int `json:"alreadyReplayed"`
	Unreplayable    int `json:"unreplayable"`
	Filtered        int `json:"filtered"`
	// Recovered is how many dead letters an interrupted earlier run had replayed without recording
	// it; they were found in their targets and are counted in AlreadyReplayed when selected.
	Recovered int `json:"recovered"`
	// Unfinished counts dead letters of a batch whose write failed: some may have been written; the
	// next run finds out (see Recovered) and replays the rest.
	Unfinished int `json:"unfinished"`
	// Other counts records in the topic that are not dead letters (the replay's markers).
	Other int `json:"otherRecords"`
}

// Exact says whether every dead letter read is counted in one outcome.
func (a Account) Exact() bool {
	return a.Read == a.Replayed+a.StillInvalid+a.Guarded+a.AlreadyReplayed+a.Unreplayable+a.Filtered+a.Unfinished
}

func (a Account) String() string {
	s := fmt.Sprintf("read %d dead letters: replayed %d, still invalid %d, guarded %d, already replayed %d, unreplayable %d, filtered %d",
		a.Read, a.Replayed, a.StillInvalid, a.Guarded, a.AlreadyReplayed, a.Unreplayable, a.Filtered)
	if a.Unfinished > 0 {
		s += fmt.Sprintf(", unfinished %d", a.Unfinished)
	}
	return s
}

// Progress is where a run is.
type Progress struct {
	Records, Total int64 // records read (dead letters and markers) of the total the run will read
	Account        Account
}

// ErrPartial is returned (wrapped) when a write failed; the account then covers the dead letters
// handled before the failure, and a later run recovers and continues.
var ErrPartial = errors.New("replay stopped before the end")

type pending struct {
	letter Letter
	target string
	out    stream.Output
}

// ErrTakenOver is returned (wrapped) when another run recovered this run's unfinished batch (this run
// was stalled longer than ActiveWindow): records of the batch may then have been written twice.
var ErrTakenOver = errors.New("another replay took over this run's batch")

// runState is what one run keeps while it writes.
type runState struct {
	id string // in every marker the run writes
	// checked is, per dead-letter partition, how far alone has read the markers written since the run
	// started.
	checked map[int]int64
	// batched holds the originals put in a batch by this run, so that a second copy of a dead letter in
	// the same run is not replayed again.
	batched map[string]bool
}

// Run replays. It reads every partition of the dead-letter topic up to the end it has when the run
// starts (dead letters of records that fail again land after it and wait for a later run).
func (r Replay) Run(ctx context.Context, b Broker) (Account, error) {
	var acct Account
	if r.Validate == nil {
		return acct, errors.New("dlq: Replay.Validate is required")
	}
	if r.To == r.Topic {
		return acct, fmt.Errorf("cannot replay %s into itself", r.Topic)
	}
	if r.MaxReplays <= 0 {
		r.MaxReplays = DefaultMaxReplays
	}
	if r.BatchSize <= 0 {
		r.BatchSize = 100
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.ActiveWindow <= 0 {
		r.ActiveWindow = DefaultActiveWindow
	}
	r.st = &runState{id: uuid.NewString(), checked: map[int]int64{}, batched: map[string]bool{}}
	ranges, err := deadLetterRanges(ctx, b, r.Topic)
	if err != nil {
		return acct, err
	}
	var total, done int64
	for _, p := range ranges {
		r.st.checked[p.Partition] = p.End
		total += p.End - p.First
	}
	// The end offsets of each target topic, taken when the run first meets it. Every intent of the run
	// records these: ends only grow, so a recovery reading from them finds whatever a batch wrote.
	targets := map[string]map[int]int64{}
	targetEnds := func(topic string) (map[int]int64, error) {
		if ends, ok := targets[topic]; ok {
			return ends, nil
		}
		rs, err := b.Ranges(ctx, topic)
		if err != nil {
			return nil, err
		}
		ends := map[int]int64{}
		for _, rg := range rs {
			ends[rg.Partition] = rg.End
		}
		targets[topic] = ends
		return ends, nil
	}
	progress := func() {
		done++
		if r.OnProgress != nil {
			r.OnProgress(Progress{Records: done, Total: total, Account: acct})
		}
	}
	// The books of every partition first: a copy of a dead letter may be in another partition than the
	// one replayed.
	books, err := readLedger(ctx, b, r.Topic, ranges)
	if err != nil {
		return acct, err
	}
	for _, in := range books.open {
		if age := r.Now().Sub(in.at); !r.DryRun && age < r.ActiveWindow {
			return acct, fmt.Errorf("%w: a batch in %s/%d started %v ago is unfinished; if its run crashed, run again after %s",
				ErrBusy, r.Topic, in.partition, age.Round(time.Second), in.at.Add(r.ActiveWindow).Format(time.RFC3339))
		}
	}
	for _, in := range books.open {
		found, err := books.recoverIntent(ctx, b, r.Topic, in.partition, in.intentMarker)
		if err != nil {
			return acct, err
		}
		d := doneMarker{Intent: in.ID, Run: r.st.id, Offsets: found, Recovered: true}
		for _, o := range found {
			origin := books.origin(r.Topic, in.partition, o, in.intentOrigins(o), 0)
			books.replayed[origin] = true
			d.Origins = append(d.Origins, origin)
		}
		acct.Recovered += len(found)
		if !r.DryRun {
			m := markerOutput(r.Topic, in.partition, "done", d, r.Now())
			if err := firstError(b.Write(ctx, []stream.Output{m})); err != nil {
				return acct, fmt.Errorf("%w: record recovered replay of %s/%d: %w", ErrPartial, r.Topic, in.partition, err)
			}
		}
	}
	for _, p := range ranges {
		if p.End <= p.First {
			continue
		}
		var batch []pending
		bytes := 0
		err = b.Read(ctx, r.Topic, p.Partition, p.First, p.End, func(rec stream.Record) error {
			defer progress()
			l, ok := Parse(rec)
			if !ok {
				acct.Other++
				return nil
			}
			l = books.counted(l, r.Topic, r.MaxReplays)
			d := r.decide(l, books)
			if d.Outcome == WouldReplay {
				if _, err := targetEnds(d.Target); errors.Is(err, ErrNoTopic) {
					d.Outcome, d.Reason = Unreplayable, "target topic "+d.Target+" does not exist: create it, or name another with --to"
				} else if err != nil {
					return fmt.Errorf("target %s: %w", d.Target, err)
				}
			}
			if d.Outcome != WouldReplay {
				acct.count(d.Outcome)
				if d.Outcome != Filtered && r.OnDecision != nil {
					r.OnDecision(d)
				}
				return nil
			}
			r.st.batched[l.Origin(r.Topic)] = true
			out := r.replayed(l, d.Target)
			if r.Partition != nil {
				out.HashKey = r.Partition(d.Target, out.Key)
			}
			batch = append(batch, pending{letter: l, target: d.Target, out: out})
			bytes += out.Size()
			if len(batch) >= r.BatchSize || bytes >= 4<<20 {
				err := r.flush(ctx, b, p, batch, targets, &acct)
				batch, bytes = batch[:0], 0
				return err
			}
			return nil
		})
		if err == nil && len(batch) > 0 {
			err = r.flush(ctx, b, p, batch, targets, &acct)
		}
		if err != nil {
			return acct, err
		}
	}
	return acct, nil
}

// intentOrigins is the recorded original of the intent's dead letter at offset, as a one-element list
// (none when the intent predates Origins).
func (in openIntent) intentOrigins(offset int64) []string {
	if i := slices.Index(in.Offsets, offset); i >= 0 && i < len(in.Origins) {
		return in.Origins[i : i+1]
	}
	return nil
}

// count adds a dead letter whose outcome is decided. A dead letter read when an error stopped the run
// before its outcome was decided (it was not written) is not counted at all.
func (a *Account) count(outcome string) {
	a.Read++
	switch outcome {
	case Replayed, WouldReplay:
		a.Replayed++
	case StillInvalid:
		a.StillInvalid++
	case Guarded:
		a.Guarded++
	case AlreadyReplayed:
		a.AlreadyReplayed++
	case Unreplayable:
		a.Unreplayable++
	case Filtered:
		a.Filtered++
	}
}

// decide is the outcome of one dead letter, before any write: WouldReplay or why not.
func (r Replay) decide(l Letter, books ledger) Decision {
	d := Decision{Letter: l, Target: cmp.Or(r.To, l.SourceTopic)}
	switch {
	case !r.Filter.Match(l):
		d.Outcome = Filtered
	case books.replayed[l.Origin(r.Topic)]:
		d.Outcome = AlreadyReplayed
	case r.st != nil && r.st.batched[l.Origin(r.Topic)]:
		d.Outcome, d.Reason = AlreadyReplayed, "a copy of a dead letter this run replays (the same original record)"
	case l.Truncated != "":
		d.Outcome, d.Reason = Unreplayable, "the dead letter holds a truncated copy ("+l.Truncated+" cut; original "+strconv.Itoa(l.OriginalSize)+" bytes)"
	case d.Target == "":
		d.Outcome, d.Reason = Unreplayable, "no source topic header: name a target with --to"
	case l.HasCode(egress.CodeNotificationRefused):
		d.Outcome, d.Reason = Unreplayable, "its value is the connector's notification that "+egress.CodeNotificationRefused+
			" says the notifications topic refused: produce it there by hand once the cause is fixed (docs/operations.md)"
	case l.ReplayCount >= r.MaxReplays:
		d.Outcome, d.Reason = Guarded, fmt.Sprintf("already replayed %d times (limit %d)", l.ReplayCount, r.MaxReplays)
	default:
		if vs := r.Validate(l, d.Target); len(vs) > 0 {
			d.Outcome, d.Violations = StillInvalid, vs
		} else {
			d.Outcome = WouldReplay
		}
	}
	return d
}

// replayed is the record a dead letter is replayed as: its original key, value, headers and
// timestamp, without the dead letter's own headers, with the replay count raised and the dead letter
// named (which also lets an interrupted run be recovered; write adds the batch's intent). Earlier replay
// headers, as written or as the entry renamed them, are replaced; other cimstream.* headers are kept only
// as the source headers of a record of one of cimstream's own topics.
func (r Replay) replayed(l Letter, target string) stream.Output {
	own := r.Own != nil && r.Own(l.SourceTopic)
	headers := make([]stream.Header, 0, len(l.Original)+3)
	for _, h := range l.Original {
		switch {
		case replayHeader[h.Key]:
		case own && sourceHeader[h.Key], !stream.Reserved(h.Key):
			headers = append(headers, h)
		default:
			headers = append(headers, stream.Header{Key: stream.RenamedPrefix + h.Key, Value: h.Value})
		}
	}
	headers = append(headers,
		stream.Header{Key: HeaderReplayCount, Value: []byte(strconv.Itoa(l.ReplayCount + 1))},
		stream.Header{Key: HeaderReplayOf, Value: []byte(Ref(r.Topic, l.Record.Partition, l.Record.Offset))})
	return stream.Output{Topic: target, Partition: stream.ByKey, Key: l.Record.Key, Value: l.Record.Value,
		Headers: headers, Time: l.OriginalTime}
}

var replayHeader = map[string]bool{}

func init() {
	for _, h := range []string{HeaderReplayCount, HeaderReplayOf, HeaderReplayIntent} {
		replayHeader[h] = true
		replayHeader[stream.RenamedPrefix+h] = true
	}
}

var sourceHeader = map[string]bool{stream.HeaderSourceTopic: true, stream.HeaderSourcePartition: true,
	stream.HeaderSourceOffset: true, stream.HeaderSourceTimestamp: true}

// flush replays a batch of one dead-letter partition between an intent and a done marker.
func (r Replay) flush(ctx context.Context, b Broker, p Range, batch []pending, targets map[string]map[int]int64, acct *Account) error {
	refused, err := r.write(ctx, b, p, batch, targets)
	if err != nil {
		acct.Read += len(batch)
		acct.Unfinished += len(batch)
		return err
	}
	outcome := WouldReplay
	if !r.DryRun {
		outcome = Replayed
	}
	for i, p := range batch {
		d := Decision{Outcome: outcome, Letter: p.letter, Target: p.target}
		if err := refused[i]; err != nil {
			d.Outcome, d.Reason = Unreplayable, "the target refused it: "+err.Error()
			delete(r.st.batched, p.letter.Origin(r.Topic)) // a later copy is not "already replayed"
		}
		acct.count(d.Outcome)
		if r.OnDecision != nil {
			r.OnDecision(d)
		}
	}
	return nil
}

// write writes one batch between its markers; p is the dead-letter partition as the run found it.
// refused holds, by index in batch, the records the target refused for good (stage.Final): they were
// not written, are left out of the done marker, and the rest of the batch is replayed.
func (r Replay) write(ctx context.Context, b Broker, p Range, batch []pending, targets map[string]map[int]int64) (refused map[int]error, err error) {
	if r.DryRun {
		return nil, nil
	}
	partition := p.Partition
	in := intentMarker{ID: uuid.NewString(), Run: r.st.id, Targets: map[string]map[int]int64{}}
	for _, p := range batch {
		in.Offsets = append(in.Offsets, p.letter.Record.Offset)
		in.Origins = append(in.Origins, p.letter.Origin(r.Topic))
		in.Targets[p.target] = targets[p.target]
	}
	if err := firstError(b.Write(ctx, []stream.Output{markerOutput(r.Topic, partition, "intent", in, r.Now())})); err != nil {
		return nil, fmt.Errorf("%w: write replay intent to %s/%d: %w", ErrPartial, r.Topic, partition, err)
	}
	if err := r.alone(ctx, b, partition, in.ID, false); err != nil {
		return nil, err
	}
	outs := make([]stream.Output, len(batch))
	for i, p := range batch {
		outs[i] = p.out
		outs[i].Headers = append(p.out.Headers[:len(p.out.Headers):len(p.out.Headers)], stream.Header{Key: HeaderReplayIntent, Value: []byte(in.ID)})
	}
	done := doneMarker{Intent: in.ID, Run: r.st.id}
	for i, err := range b.Write(ctx, outs) {
		switch {
		case err == nil:
			done.Offsets = append(done.Offsets, in.Offsets[i])
			done.Origins = append(done.Origins, in.Origins[i])
		case stage.Final(err):
			if refused == nil {
				refused = map[int]error{}
			}
			refused[i] = err
		default:
			return nil, fmt.Errorf("%w: %w (a later run finds what was written and replays the rest)", ErrPartial, err)
		}
	}
	// Had another run taken the batch over meanwhile, this done marker would hide that.
	if err := r.alone(ctx, b, partition, in.ID, true); err != nil {
		return nil, err
	}
	if err := firstError(b.Write(ctx, []stream.Output{markerOutput(r.Topic, partition, "done", done, r.Now())})); err != nil {
		return nil, fmt.Errorf("%w: record replay in %s/%d: %w (a later run recovers it)", ErrPartial, r.Topic, partition, err)
	}
	return refused, nil
}

func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// alone checks that no other run wrote a marker to the partition since this run last looked (at first,
// since it started). intent is the batch being written; written says whether its records were.
// Only the markers not yet checked are read, so a run reads each marker once.
func (r Replay) alone(ctx context.Context, b Broker, partition int, intent string, written bool) error {
	ranges, err := b.Ranges(ctx, r.Topic)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPartial, err)
	}
	for _, now := range ranges {
		if now.Partition != partition {
			continue
		}
		err := b.Read(ctx, r.Topic, partition, r.st.checked[partition], now.End, func(rec stream.Record) error {
			kind, ok := markerKind(rec)
			if !ok {
				return nil
			}
			var m struct {
				Run    string `json:"run"`
				Intent string `json:"intent"`
			}
			_ = json.Unmarshal(rec.Value, &m)
			switch {
			case m.Run == r.st.id:
				return nil
			case string(kind) == "done" && m.Intent == intent && written:
				return fmt.Errorf("%w: %w: a run stalled longer than the active window: another replay recovered its batch in %s/%d (done marker at offset %d) while it was still writing it, so records of that batch may have been replayed twice (look for repeated %s headers in the target); stopped. Run one replay at a time",
					ErrPartial, ErrTakenOver, r.Topic, partition, rec.Offset, HeaderReplayOf)
			case string(kind) == "done" && m.Intent == intent:
				return fmt.Errorf("%w: %w: another replay recovered this run's batch in %s/%d (done marker at offset %d) before it was written; nothing of it was written by this run, stopped. Run one replay at a time",
					ErrPartial, ErrTakenOver, r.Topic, partition, rec.Offset)
			}
			what := "nothing of this batch was written, run again later"
			if written {
				what = "this batch was written; a later run records it"
			}
			return fmt.Errorf("%w: %w: %s marker at %s/%d offset %d is not this run's; %s",
				ErrPartial, ErrBusy, kind, r.Topic, partition, rec.Offset, what)
		})
		if err != nil {
			return err
		}
		r.st.checked[partition] = now.End
	}
	return nil
}

// deadLetterRanges is Ranges of the dead-letter topic, saying what to do when it is missing.
func deadLetterRanges(ctx context.Context, b Broker, topic string) ([]Range, error) {
	ranges, err := b.Ranges(ctx, topic)
	if errors.Is(err, ErrNoTopic) {
		return nil, fmt.Errorf("dead-letter topic %s does not exist (check topics.deadLetter or --topic; `cimstream topics create` creates it): %w", topic, err)
	}
	return ranges, err
}
