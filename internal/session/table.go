package session

import (
	"container/heap"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Table holds the sessions of one input partition, with a time-ordered index of the moment each key
// next needs attention (proactive expiry of an open session, forgetting an ended one), so housekeeping
// costs O(log n) per key it touches, not a scan of the table.
type Table struct {
	idle     IdleTimeouts
	sessions map[string]*entry
	// due orders keys by when processing time passes their timeout; parked holds the ones past it in
	// processing time, ordered by when record time will be.
	due    deadlines
	parked deadlines
	open   int   // sessions open in the table
	window int64 // replay window, ms of running time
	clock  runningClock
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
	deadline int64 // when Expire next looks at the key: processing time in due, record time in parked
	index    int   // in its heap
	parked   bool  // in parked rather than due
	counted  bool  // counted in Table.open
}

// NewTable returns an empty table with the idle timeouts.
func NewTable(idle IdleTimeouts) *Table {
	return &Table{idle: idle, sessions: map[string]*entry{}, window: DefaultReplayWindow.Milliseconds()}
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

// touch records activity on e at nowMillis and reschedules it.
func (t *Table) touch(e *entry, nowMillis int64) {
	e.seen, e.touched = nowMillis, nowMillis
	t.schedule(e)
}

// touchPassive records a passive record: it keeps the key remembered longer, but does not extend the
// session in processing time either.
func (t *Table) touchPassive(e *entry, nowMillis int64) {
	e.touched = nowMillis
	t.schedule(e)
}

// schedule recomputes e's deadline: an open session expires once more than its idle timeout passed in
// both record time and processing time since its last activity; an ended one is forgotten after twice
// the timeout (in both), so that a replayed record still finds the ids it was given.
func (t *Table) schedule(e *entry) {
	t.unqueue(e)
	if e.Open {
		e.deadline = e.seen + t.span(e)
	} else {
		e.deadline = e.touched + t.span(e)
	}
	heap.Push(&t.due, e)
	switch {
	case e.Open && !e.counted:
		t.open++
	case !e.Open && e.counted:
		t.open--
	}
	e.counted = e.Open
}

// span is how long e may stay idle: its timeout while open, twice that once ended.
func (t *Table) span(e *entry) int64 {
	idle := t.idleOf(e.key).Milliseconds()
	if e.Open {
		return idle
	}
	return 2 * idle
}

// unqueue takes e out of whichever heap holds it.
func (t *Table) unqueue(e *entry) {
	switch {
	case e.index < 0:
	case e.parked:
		heap.Remove(&t.parked, e.index)
	default:
		heap.Remove(&t.due, e.index)
	}
	e.parked = false
}

// Change is a state Expire changed: an ended session to persist, or a key to forget (State nil).
type Change struct {
	Key   string
	State *State
	// Expired is set when an open session ended by inactivity (as opposed to being forgotten).
	Expired bool
	// Evicted: decisions dropped inside the replay window to make room (see Outcome.Evicted).
	Evicted int
}

// Expire ends the open sessions whose idle timeout passed in both processing time (nowMillis) and
// record time (recordMillis: how far the partition's input is known to have come), and forgets the
// ended ones past twice the timeout; the caller persists the changes. A key past its timeout in
// processing time only waits, parked, for record time.
func (t *Table) Expire(nowMillis, recordMillis int64) []Change {
	var changes []Change
	run := t.running(nowMillis)
	for len(t.due) > 0 && t.due[0].deadline < nowMillis {
		e := heap.Pop(&t.due).(*entry)
		if rd := e.LastActivity + t.span(e); rd >= recordMillis {
			e.deadline, e.parked = rd, true
			heap.Push(&t.parked, e)
			continue
		}
		changes = t.lapse(e, run, changes)
	}
	for len(t.parked) > 0 && t.parked[0].deadline < recordMillis {
		e := heap.Pop(&t.parked).(*entry)
		e.parked = false
		changes = t.lapse(e, run, changes)
	}
	return changes
}

// lapse ends e's open session by inactivity, or forgets e once ended; e is in no heap.
func (t *Table) lapse(e *entry, run int64, changes []Change) []Change {
	if e.Open {
		e.Open, e.Ended = false, ReasonIdle
		evicted := e.remember("", "", run, t.window)
		t.schedule(e)
		return append(changes, Change{Key: e.key, State: &e.State, Expired: true, Evicted: evicted})
	}
	delete(t.sessions, e.key)
	return append(changes, Change{Key: e.key})
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
	t.unqueue(e)
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
