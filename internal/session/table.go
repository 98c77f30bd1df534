package session

import (
	"cmp"
	"container/heap"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Table holds the sessions of one input partition, with a time-ordered index of the moment each key
// next needs attention (proactive expiry of an open session, forgetting an ended one), so housekeeping
// costs O(log n) per key it touches, not a scan of the table.
type Table struct {
	idle     IdleTimeouts
	sessions map[string]*entry
	due      deadlines // keys by when Expire next looks at them
	open     int       // sessions open in the table
	window   int64     // replay window, ms of running time
	maxBytes int       // bound of a key's encoded state (MaxStateBytes)
	clock    runningClock
	seq      int64 // highest State.Seq restored or applied
}

// runningClock is the partition's running time: it resumes from the highest value a restored state
// carries and advances with the processing clock only while the table is in use, so time a partition
// spent unprocessed (an outage, a crash and its restart) does not count.
type runningClock struct {
	restored int64 // highest State.Running restored
	started  bool
	base     int64 // processing time at which the clock (re)started
	last     int64
}

// running returns the running clock at processing time nowMillis; it never goes back.
func (t *Table) running(nowMillis int64) int64 {
	c := &t.clock
	if !c.started {
		c.started, c.base, c.last = true, nowMillis, c.restored
	}
	c.last = max(c.last, c.restored+nowMillis-c.base)
	return c.last
}

// Pause stops the running clock while the table is not in use (its partition was revoked and may come
// back): the next use resumes it where it stopped.
func (t *Table) Pause() {
	c := &t.clock
	if c.started {
		c.restored, c.started = max(c.restored, c.last), false
	}
}

// WithReplayWindow sets how long (running time) a decision stays answerable after the next one.
func (t *Table) WithReplayWindow(d time.Duration) *Table {
	t.window = d.Milliseconds()
	return t
}

// entry is a key's state plus what only this process knows: when it last processed a record of the
// key (wall clock), which is never persisted.
type entry struct {
	State
	key      string
	seen     int64 // processing time of the latest activity (or of the restore)
	touched  int64 // processing time of the latest record of any kind
	deadline int64 // processing time at which Expire next looks at the key
	index    int   // in the deadlines heap
	counted  bool  // counted in Table.open
}

// NewTable returns an empty table with the idle timeouts.
func NewTable(idle IdleTimeouts) *Table {
	return &Table{idle: idle, sessions: map[string]*entry{}, window: DefaultReplayWindow.Milliseconds(), maxBytes: MaxStateBytes}
}

// NextSeq numbers the next record applied: above every state restored or applied, so a restore can
// tell the later of two states of a key whichever input partition their records came from.
func (t *Table) NextSeq() int64 {
	t.seq++
	return t.seq
}

// SeqGap is how far a restore moves the sequence past the highest state it read: further than the
// records a previous owner can still have in flight (a batch), whose late writes must lose to this
// owner's on the next restore.
const SeqGap = 1 << 20

// Restored ends a restore: the sequence goes on SeqGap past the highest state read.
func (t *Table) Restored() {
	t.seq += SeqGap
}

// Len is the number of keys held.
func (t *Table) Len() int { return len(t.sessions) }

// Active is the number of sessions open (not ended by END_CHAT, START_CHAT or inactivity).
func (t *Table) Active() int { return t.open }

// Get returns the state of key (nil when none); the caller must not change it.
func (t *Table) Get(key string) *State {
	if e := t.sessions[key]; e != nil {
		return &e.State
	}
	return nil
}

func (t *Table) add(key string, st *State) *entry {
	e := &entry{State: *st, key: key, index: -1}
	t.sessions[key] = e
	return e
}

// schedule recomputes e's deadline: an open session expires once its idle timeout passed after its
// last activity was processed; an ended one is forgotten after twice the timeout, and not before the
// replay window passed, so that a replayed record still finds the ids it was given.
func (t *Table) schedule(e *entry) {
	idle := t.idleOf(e.key).Milliseconds()
	if e.Open {
		e.deadline = e.seen + idle
	} else {
		e.deadline = e.touched + max(2*idle, t.window)
	}
	if e.index < 0 {
		heap.Push(&t.due, e)
	} else {
		heap.Fix(&t.due, e.index)
	}
	switch {
	case e.Open && !e.counted:
		t.open++
	case !e.Open && e.counted:
		t.open--
	}
	e.counted = e.Open
}

// Change is a state Expire changed: an ended session to persist, or a key to forget (State nil).
type Change struct {
	Key   string
	State *State
	// Expired is set when an open session ended by inactivity (as opposed to being forgotten): Previous
	// is that session, ClosedAt the record time it expired at (last activity + idle timeout).
	Expired  bool
	Previous Previous
	ClosedAt int64
	// Trimmed: what the bounds of the ended state dropped, as Outcome's.
	Trimmed
}

// Expire ends the open sessions idle past their timeout, and forgets the ended ones past twice the
// timeout and the replay window; the caller persists the changes. Time is measured up to the horizon:
// the earlier of the processing clock (nowMillis) and the upstream watermark (upstreamMillis, the
// processing time before which every connector record is known to be applied). A session is idle in
// record time when no record of its customer came within the timeout after its last activity was
// processed, and the watermark proves none is still on its way; measuring both on this instance's
// clock makes the rule immune to connector clocks and to other customers' traffic.
func (t *Table) Expire(nowMillis, upstreamMillis int64) []Change {
	var changes []Change
	run := t.running(nowMillis)
	horizon := min(nowMillis, upstreamMillis)
	for len(t.due) > 0 && t.due[0].deadline < horizon {
		changes = t.lapse(heap.Pop(&t.due).(*entry), run, nowMillis, changes)
	}
	return changes
}

// lapse ends e's open session by inactivity, or forgets e once ended; e is in no heap.
func (t *Table) lapse(e *entry, run, nowMillis int64, changes []Change) []Change {
	if e.Open {
		at := e.LastActivity + t.idleOf(e.key).Milliseconds()
		if e.LastActivity <= 0 { // opened without a trusted time: the expiry is dated when it happens
			at = nowMillis
		}
		c := Change{Key: e.key, State: &e.State, Expired: true, ClosedAt: at,
			Previous: Previous{ChannelSessionID: e.ChannelSessionID, ConversationID: e.ConversationID, Data: e.current()}}
		e.Open, e.Ended = false, ReasonIdle
		c.Evicted = e.remember(Decision{Closed: ReasonIdle, ClosedAt: c.ClosedAt}, run, t.window)
		c.Trimmed.add(e.bound(t.maxBytes, run, t.window))
		t.schedule(e)
		return append(changes, c)
	}
	delete(t.sessions, e.key)
	return append(changes, Change{Key: e.key})
}

// RecentExpiries lists the proactive expiries among the restored states made within the replay window
// of the restored running clock, oldest first: whether their events landed before the crash or
// rebalance is unknown, so the caller repeats them.
func (t *Table) RecentExpiries() []Change {
	var out []Change
	for _, e := range t.sessions {
		n := len(e.Recent)
		if e.Open || n < 2 {
			continue
		}
		last, prev := e.Recent[n-1], e.Recent[n-2]
		if len(last.By) > 0 || last.Closed != ReasonIdle || last.At+t.window < t.clock.restored || prev.ChannelSessionID == "" {
			continue
		}
		out = append(out, Change{Key: e.key, State: &e.State, Expired: true, ClosedAt: last.ClosedAt,
			Previous: Previous{ChannelSessionID: prev.ChannelSessionID, ConversationID: prev.ConversationID, Data: prev.Data}})
	}
	slices.SortFunc(out, func(a, b Change) int {
		return cmp.Or(cmp.Compare(a.ClosedAt, b.ClosedAt), strings.Compare(a.Key, b.Key))
	})
	return out
}

// ErrCorrupt marks a changelog value that cannot be read; the key starts fresh.
var ErrCorrupt = errors.New("corrupt session state")

// Restore loads one changelog record at processing time nowMillis; a nil value (tombstone) deletes the
// key. Of two states of a key the one with the higher Seq wins, whatever order they were read in. A
// value that cannot be read drops the key and returns an error wrapping ErrCorrupt.
func (t *Table) Restore(key string, value []byte, nowMillis int64) error {
	if value == nil {
		t.forget(key)
		return nil
	}
	var st State
	if err := json.Unmarshal(value, &st); err != nil || !st.valid() {
		t.forget(key)
		if err == nil {
			err = errors.New("inconsistent fields")
		}
		return fmt.Errorf("%w: key %q: %v", ErrCorrupt, key, err)
	}
	t.clock.restored = max(t.clock.restored, st.Running)
	t.seq = max(t.seq, st.Seq)
	e := t.sessions[key]
	if e != nil && st.Seq < e.Seq {
		return nil
	}
	if e == nil {
		e = t.add(key, &st)
	} else {
		e.State = st
	}
	e.seen, e.touched = nowMillis, nowMillis
	if st.Seen > 0 {
		e.seen = min(st.Seen, nowMillis) // the idle countdown goes on where it was (the watermark guards it)
	}
	t.schedule(e)
	return nil
}

func (st *State) valid() bool {
	if len(st.Sources) != len(st.Applied) || len(st.Recent) > recentLimit {
		return false
	}
	for _, d := range st.Recent {
		if len(d.After) > len(st.Sources) {
			return false
		}
	}
	return true
}

func (t *Table) forget(key string) {
	e := t.sessions[key]
	if e == nil {
		return
	}
	if e.counted {
		t.open--
	}
	if e.index >= 0 {
		heap.Remove(&t.due, e.index)
	}
	delete(t.sessions, key)
}

// LatestActivity is the highest LastActivity held (the partition's record time after a restore).
func (t *Table) LatestActivity() int64 {
	var latest int64
	for _, e := range t.sessions {
		latest = max(latest, e.LastActivity)
	}
	return latest
}

// deadlines is a min-heap of entries by deadline.
type deadlines []*entry

func (d deadlines) Len() int           { return len(d) }
func (d deadlines) Less(i, j int) bool { return d[i].deadline < d[j].deadline }
func (d deadlines) Swap(i, j int) {
	d[i], d[j] = d[j], d[i]
	d[i].index, d[j].index = i, j
}
func (d *deadlines) Push(x any) {
	e := x.(*entry)
	e.index = len(*d)
	*d = append(*d, e)
}
func (d *deadlines) Pop() any {
	old := *d
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*d = old[:len(old)-1]
	return e
}

// idleOf is the idle timeout of key.
func (t *Table) idleOf(key string) time.Duration { return t.idle(ServiceIdentifier(key)) }
