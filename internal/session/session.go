// Package session decides the channel session and conversation of each inbound message. It is pure
// logic: a Table holds the sessions of one partition, Apply decides for one message and returns the
// state to persist; the changelog and the broker are someone else's business.
//
// Decisions are functions of the previous state and the message (its id, intent, carried ids, record
// time), never of the wall clock, with one exception the contract asks for: a session idle past its
// timeout in both record time and processing time is ended proactively (Expire). That decision is
// persisted like any other, so a replay decides the same. A record applied before (a duplicate from
// either inbound stage after a crash or rebalance) is recognised by its source coordinates and answered
// with the ids it got the first time.
package session

import (
	"cmp"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Namespace for the ids cimstream derives (UUIDv5).
var Namespace = uuid.MustParse("6b0e2f61-93a4-4c51-9f0e-4d2b8a7c3e15")

// DeriveID returns a UUIDv5 of parts, for ids that must come out the same every time.
func DeriveID(parts ...string) string {
	name := make([]byte, 0, 64) // built by hand: strings.Join and a conversion would allocate twice
	for i, p := range parts {
		if i > 0 {
			name = append(name, 0)
		}
		name = append(name, p...)
	}
	return uuid.NewSHA1(Namespace, name).String()
}

// Key is the state key of a customer on a channel: length-prefixed so no two pairs share a key.
func Key(serviceIdentifier, channelCustomerIdentifier string) string {
	return strconv.Itoa(len(serviceIdentifier)) + ":" + serviceIdentifier + channelCustomerIdentifier
}

// ServiceIdentifier returns the serviceIdentifier a Key was made of ("" for other keys).
func ServiceIdentifier(key string) string {
	customer, ok := Customer(key)
	if !ok {
		return ""
	}
	return key[strings.IndexByte(key, ':')+1 : len(key)-len(customer)]
}

// Customer returns the channelCustomerIdentifier a Key was made of; ok is false for other keys (a
// repartition key of a reply, "conversation:<id>").
func Customer(key string) (string, bool) {
	colon := strings.IndexByte(key, ':')
	if colon <= 0 {
		return "", false
	}
	n, err := strconv.Atoi(key[:colon])
	if err != nil || n < 0 || colon+1+n > len(key) {
		return "", false
	}
	return key[colon+1+n:], true
}

// A state remembers its recent decisions (id changes and ends), to answer a replayed record with the
// ids it got the first time. A decision governs every record applied after it until the next one, so it
// is needed until every record it governed can no longer come back: it is dropped once the next decision
// is older than the replay window, measured on the partition's running clock (Table.running), which
// stands still while the partition is not processed, so an outage does not age the decisions a restart
// replays. recentLimit bounds memory and changelog values for a key that makes many decisions within
// one window (a backlog of short conversations); dropping one inside its window is reported (Evicted).
const recentLimit = 64

// MaxStateBytes bounds a key's changelog value, whatever its messages carry: a quarter of the 1 MiB a
// topic takes by default (max.message.bytes), so no state write is ever refused for its size.
const MaxStateBytes = 256 << 10

// DefaultReplayWindow is how long, in running time, a decision stays answerable after the next one.
const DefaultReplayWindow = 10 * time.Minute

// State is what is stored per key in the changelog.
type State struct {
	ChannelSessionID string `json:"s"`
	ConversationID   string `json:"c"`
	Open             bool   `json:"open"`
	// Ended says why the last session ended ("" while open or never ended).
	Ended Reason `json:"e,omitempty"`
	// LastActivity is the session time (epoch ms, record time) of the latest activity.
	LastActivity int64 `json:"t"`
	// Seq is the partition's sequence number of the latest record applied (Table.NextSeq): restore keeps
	// the state with the highest, whatever order the changelog records landed in. It counts records of
	// both inbound paths (repartitioned or taken where they are), whose offsets are not comparable.
	Seq int64 `json:"q"`
	// Running is the partition's running clock (ms) at the latest change; a restore resumes the clock
	// from the highest of them.
	Running int64 `json:"p,omitempty"`
	// Seen is the processing time (epoch ms) the latest activity was applied at: a restore resumes the
	// session's idle countdown from it, so a restart does not postpone an expiry by a whole timeout.
	Seen int64 `json:"w,omitempty"`
	// Sources are the source partitions ("topic/partition") this key's records came from, and Applied
	// the highest source offset applied from each: a record at or below it was applied before.
	Sources []string `json:"src,omitempty"`
	Applied []int64  `json:"a,omitempty"`
	// Recent are the latest decisions, oldest first.
	Recent []Decision `json:"r,omitempty"`
}

// Decision gives the ids of the records applied after it: those whose source offset exceeds After
// (indexed like State.Sources; a missing entry is -1). Empty ids mean no session.
//
// A decision also keeps what a replay of the record that made it needs to repeat its lifecycle events
// byte for byte: that record's position (By), the end of the session before it (Closed, ClosedAt) and,
// for a session it opened, the session's data.
type Decision struct {
	After            []int64 `json:"a,omitempty"`
	ChannelSessionID string  `json:"s"`
	ConversationID   string  `json:"c"`
	// At is the partition's running clock (ms) when the decision was made.
	At int64 `json:"p,omitempty"`
	// By is the record that made the decision: {index in State.Sources, offset}; empty when none did
	// (proactive expiry).
	By []int64 `json:"b,omitempty"`
	// Closed says why the session before this decision ended with it, at record time ClosedAt (ms).
	Closed   Reason `json:"e,omitempty"`
	ClosedAt int64  `json:"x,omitempty"`
	Data
	// fixedLen caches the encoded length of the fields that never change once the decision is made
	// (0: not computed yet); see encodedLen.
	fixedLen int
}

// Data is what lifecycle events tell about a session beyond its ids: the id of the message that opened
// it (which tells two openings of the same ids apart), the time its STARTED carries, and the channelData
// and customer of that message (compact JSON; empty when events are off or the message had none).
type Data struct {
	Opener      string          `json:"o,omitempty"`
	OpenedAt    int64           `json:"t,omitempty"`
	ChannelData json.RawMessage `json:"cd,omitempty"`
	Customer    json.RawMessage `json:"cu,omitempty"`
}

// Previous is a session that ended before a message: its ids and data.
type Previous struct {
	ChannelSessionID string
	ConversationID   string
	Data
}

// Reason says why a session ended.
type Reason string

const (
	ReasonIdle      Reason = "idle"
	ReasonEndChat   Reason = "end_chat"
	ReasonStartChat Reason = "start_chat"
	ReasonAdopted   Reason = "adopted" // the message carried other ids
)

// Position names a record by the connector record it came from.
type Position struct {
	Source string // "topic/partition" of the connector record
	Offset int64
}

// Message is what a decision needs to know about one inbound message.
type Message struct {
	Position Position
	Seq      int64 // Table.NextSeq when the record is applied
	ID       string
	Intent   string
	// TimeMillis is the session time (trusted record time), epoch ms; 0 when unknown (an untrusted time
	// on a partition without record time yet): such a message continues an open session, never ends
	// one by inactivity, and leaves its last activity as it was.
	TimeMillis       int64
	ChannelSessionID string // carried by the message, "" when absent
	ConversationID   string
	// Passive messages (NOTIFICATION bodies) never open or extend a session: they get the current
	// ids while one is active and none otherwise.
	Passive bool
	// Data is kept with a session this message opens, for its lifecycle events (Opener and OpenedAt are
	// set here). LoadData, when set, gives it instead, called only for a message that opens a session
	// (most messages do not, and compacting their channel data would be wasted).
	Data     Data
	LoadData func() Data
	// EventMillis is the time of the events this message causes (its output's record time; always
	// positive), kept with the decision so a replay dates them alike.
	EventMillis int64
}

// Outcome is the decision for one message. A replay repeats the lifecycle fields (Opened, Closed,
// Previous, ClosedAt, Ended, Data) of the first application while the decisions it made are remembered.
type Outcome struct {
	ChannelSessionID string // "" for a passive message outside a session
	ConversationID   string
	Opened           bool // a new session began with this message
	// Closed says why the previous session (Previous) ended just before this message, at record time
	// ClosedAt (ms; 0 when unknown).
	Closed   Reason
	Previous Previous
	ClosedAt int64
	// Ended: this message (END_CHAT) ended the session it belongs to, at EndedAt (ms).
	Ended   bool
	EndedAt int64
	// Data of the message's session (for its events; Opener empty when no message opened it).
	Data     Data
	Replayed bool // the message was applied before; state unchanged
	// Forgotten marks a replay older than every remembered decision: answered with the current ids.
	Forgotten bool
	Trimmed
	State *State // the state to persist (nil when unchanged)
}

// Trimmed is what the bounds of a key's state dropped.
type Trimmed struct {
	// Evicted counts decisions dropped inside the replay window because the key made more than
	// recentLimit of them, or for room: a replay of what they governed would be answered with later ids.
	Evicted int
	// SourcesDropped counts source partitions the state forgot for room (the byte cap or maxSources)
	// while some kept decision still needed them: a replay of their records is applied again as new.
	SourcesDropped int
	// Reset: even the newest decisions did not fit the byte cap, and the state was reset (see bound).
	Reset bool
}

func (t *Trimmed) add(more Trimmed) {
	t.Evicted += more.Evicted
	t.SourcesDropped += more.SourcesDropped
	t.Reset = t.Reset || more.Reset
}

// Apply decides the ids of m for key; nowMillis is the processing clock, used only to schedule
// proactive expiry (see Expire).
func (t *Table) Apply(key string, m Message, nowMillis int64) Outcome {
	t.seq = max(t.seq, m.Seq)
	e := t.sessions[key]
	if e != nil {
		if src := e.source(m.Position.Source); src >= 0 && m.Position.Offset <= e.Applied[src] {
			return e.replay(src, m.Position.Offset)
		}
	}
	run := t.running(nowMillis)
	if m.Passive && e == nil {
		// Nothing to attach and nothing to extend; remembered anyway, so that a replay after a session
		// opened later still passes without ids.
		e = t.add(key, &State{Recent: []Decision{{At: run}}, Running: run})
	}
	if e != nil {
		e.prune(run, t.window)
	}
	var st *State
	if e != nil {
		st = &e.State
	}
	idle := t.idleOf(key).Milliseconds()
	active := st != nil && st.Open && (m.TimeMillis == 0 || st.LastActivity == 0 || m.TimeMillis-st.LastActivity <= idle)
	if m.Passive {
		return t.applyPassive(e, m, active, nowMillis, run)
	}

	var out Outcome
	switch {
	case m.ChannelSessionID != "" || m.ConversationID != "":
		// Ids the message carries are kept and become the key's session; a missing one is completed
		// from the active session or derived.
		var sid, cid string // what completes them
		switch {
		case active:
			sid, cid = st.ChannelSessionID, st.ConversationID
		case m.ChannelSessionID == "" || m.ConversationID == "":
			sid, cid = openedIDs(key, m.ID)
		}
		sid, cid = cmp.Or(m.ChannelSessionID, sid), cmp.Or(m.ConversationID, cid)
		if active && (sid != st.ChannelSessionID || cid != st.ConversationID) {
			out.closing(st, ReasonAdopted, m.EventMillis)
		}
		out.Opened = !active || out.Closed != ""
		out.ChannelSessionID, out.ConversationID = sid, cid
	case m.Intent == "START_CHAT" || m.Intent == "START_CONVERSATION":
		if active {
			out.closing(st, ReasonStartChat, m.EventMillis)
		}
		out.Opened = true
		out.ChannelSessionID, out.ConversationID = openedIDs(key, m.ID)
	case active:
		out.ChannelSessionID, out.ConversationID = st.ChannelSessionID, st.ConversationID
	default:
		if st != nil && st.Open {
			out.closing(st, ReasonIdle, st.LastActivity+idle)
		}
		out.Opened = true
		out.ChannelSessionID, out.ConversationID = openedIDs(key, m.ID)
	}

	if e == nil {
		e = t.add(key, &State{})
		st = &e.State
	}
	by := st.position(m.Position)
	if out.Opened || st.ChannelSessionID != out.ChannelSessionID || st.ConversationID != out.ConversationID || len(st.Recent) == 0 {
		d := Decision{ChannelSessionID: out.ChannelSessionID, ConversationID: out.ConversationID, By: by,
			Closed: out.Closed, ClosedAt: out.ClosedAt}
		if out.Opened {
			d.Data = m.Data
			if m.LoadData != nil {
				d.Data = m.LoadData()
			}
			d.Data.Opener, d.Data.OpenedAt = m.ID, m.EventMillis
		}
		out.Evicted += st.remember(d, run, t.window) // governs this record and the ones after
	}
	out.Data = st.current()
	last := st.LastActivity
	st.ChannelSessionID, st.ConversationID = out.ChannelSessionID, out.ConversationID
	st.Open, st.Ended = true, ""
	st.LastActivity = m.TimeMillis
	if !out.Opened && last > st.LastActivity {
		st.LastActivity = last // out-of-order timestamps (and unknown ones) never shorten a session
	}
	st.applied(m, run)
	st.Seen = max(st.Seen, nowMillis)
	if m.Intent == "END_CHAT" {
		out.Ended, out.EndedAt = true, m.EventMillis
		st.Open, st.Ended = false, ReasonEndChat
		// Governs the records after the END_CHAT, not the END_CHAT itself. Its own By: applied may have
		// moved the source (and by is the opening decision's).
		out.Evicted += st.remember(Decision{By: st.position(m.Position), Closed: ReasonEndChat, ClosedAt: m.EventMillis}, run, t.window)
	}
	// Bounded before anyone encodes it: the table then holds exactly what the changelog gets.
	out.Trimmed.add(st.bound(t.maxBytes, run, t.window))
	e.seen, e.touched = nowMillis, nowMillis
	t.schedule(e)
	out.State = st
	return out
}

// applyPassive attaches the current ids to a passive message without extending the session. A session
// found idle past its timeout in record time ends here, as it would at the next message.
func (t *Table) applyPassive(e *entry, m Message, active bool, nowMillis, run int64) Outcome {
	st := &e.State
	var out Outcome
	switch {
	case active:
		out.ChannelSessionID, out.ConversationID = st.ChannelSessionID, st.ConversationID
		out.Data = st.current()
	case st.Open:
		out.closing(st, ReasonIdle, st.LastActivity+t.idleOf(e.key).Milliseconds())
		st.Open, st.Ended = false, ReasonIdle
		out.Evicted += st.remember(Decision{By: st.position(m.Position), Closed: ReasonIdle, ClosedAt: out.ClosedAt}, run, t.window)
	}
	st.applied(m, run)
	out.Trimmed.add(st.bound(t.maxBytes, run, t.window))
	// The key is remembered longer, but the session is not extended in processing time either.
	e.touched = nowMillis
	t.schedule(e)
	out.State = st
	return out
}

// replay answers a record applied before with the decision that governed it, and repeats the lifecycle
// changes the record made: those of the decision it made, and the end of its session when the next
// decision was made by it (END_CHAT).
func (e *entry) replay(src int, offset int64) Outcome {
	st := &e.State
	for i := len(st.Recent) - 1; i >= 0; i-- {
		d := st.Recent[i]
		after := int64(-1)
		if src < len(d.After) {
			after = d.After[src]
		}
		if offset <= after {
			continue
		}
		out := Outcome{ChannelSessionID: d.ChannelSessionID, ConversationID: d.ConversationID, Replayed: true}
		if d.ChannelSessionID != "" {
			out.Data = st.Recent[i].Data
		}
		if d.madeBy(src, offset) {
			out.Opened = d.Opener != ""
			if d.Closed != "" && i > 0 {
				p := st.Recent[i-1]
				out.Closed, out.ClosedAt = d.Closed, d.ClosedAt
				out.Previous = Previous{ChannelSessionID: p.ChannelSessionID, ConversationID: p.ConversationID, Data: st.Recent[i-1].Data}
			}
		}
		if i+1 < len(st.Recent) && st.Recent[i+1].madeBy(src, offset) && st.Recent[i+1].Closed == ReasonEndChat {
			out.Ended, out.EndedAt = true, st.Recent[i+1].ClosedAt
		}
		return out
	}
	// Older than anything remembered: answer with the current ids rather than rewrite history.
	return Outcome{ChannelSessionID: st.ChannelSessionID, ConversationID: st.ConversationID, Replayed: true, Forgotten: true}
}

// source returns the index of src in Sources, or -1.
func (st *State) source(src string) int { return slices.Index(st.Sources, src) }

// applied records m as applied at running time run. Sources are kept least recently applied first,
// the order in which bound drops them.
func (st *State) applied(m Message, run int64) {
	st.Running = max(st.Running, run)
	i := st.source(m.Position.Source)
	if i < 0 {
		// A source new to the key, or one dropped for room coming back: no decision so far governs its
		// records before this one, so a replay of one of those is answered as forgotten, never with the
		// ids of a decision made while the source was not known.
		n := len(st.Sources)
		for j := range st.Recent {
			d := &st.Recent[j]
			for len(d.After) < n {
				d.After = append(d.After, -1)
			}
			d.After = append(d.After, m.Position.Offset-1)
		}
		st.Sources = append(st.Sources, m.Position.Source)
		st.Applied = append(st.Applied, m.Position.Offset)
	} else {
		st.Applied[i] = max(st.Applied[i], m.Position.Offset)
		st.toBack(i)
	}
	st.Seq = max(st.Seq, m.Seq)
}

// toBack moves source i to the end of Sources (the most recently applied), with its entries in Applied
// and in every decision's After and By.
func (st *State) toBack(i int) {
	n := len(st.Sources)
	if i == n-1 {
		return
	}
	src, off := st.Sources[i], st.Applied[i]
	st.Sources = append(slices.Delete(st.Sources, i, i+1), src)
	st.Applied = append(slices.Delete(st.Applied, i, i+1), off)
	for j := range st.Recent {
		d := &st.Recent[j]
		if i < len(d.After) { // else entries i and after are all missing (-1), and stay so
			after := d.After[i]
			for len(d.After) < n {
				d.After = append(d.After, -1)
			}
			d.After = append(slices.Delete(d.After, i, i+1), after)
		}
		if len(d.By) == 2 {
			switch {
			case d.By[0] == int64(i):
				d.By[0] = int64(n - 1)
			case d.By[0] > int64(i):
				d.By[0]--
			}
		}
	}
}

// closing records that the active session of st ends before the message, for reason at record time at.
func (out *Outcome) closing(st *State, reason Reason, at int64) {
	out.Closed, out.ClosedAt = reason, at
	out.Previous = Previous{ChannelSessionID: st.ChannelSessionID, ConversationID: st.ConversationID, Data: st.current()}
}

// position names p for By: its index in Sources (as applied will add it) and its offset.
func (st *State) position(p Position) []int64 {
	i := st.source(p.Source)
	if i < 0 {
		i = len(st.Sources)
	}
	return []int64{int64(i), p.Offset}
}

// madeBy reports whether the record at offset of source index src made d.
func (d *Decision) madeBy(src int, offset int64) bool {
	return len(d.By) == 2 && d.By[0] == int64(src) && d.By[1] == offset
}

// current is the data of the latest session (the latest decision with ids): the data of a session is
// kept on the decision that opened it.
func (st *State) current() Data {
	for i := len(st.Recent) - 1; i >= 0; i-- {
		if st.Recent[i].ChannelSessionID != "" {
			return st.Recent[i].Data
		}
	}
	return Data{}
}

// remember adds decision d, which governs every record applied from now on, at running time run. When
// the key holds recentLimit decisions the oldest go; it returns how many of those were still inside the
// window.
func (st *State) remember(d Decision, run, window int64) (evicted int) {
	st.prune(run, window)
	if n := len(st.Recent); n >= recentLimit {
		drop := n - recentLimit + 1
		for i := 0; i < drop; i++ {
			if st.Recent[i+1].At+window >= run {
				evicted++
			}
		}
		st.Recent = append(st.Recent[:0], st.Recent[drop:]...)
	}
	d.After, d.At = append([]int64(nil), st.Applied...), run
	st.Recent = append(st.Recent, d)
	st.Running = max(st.Running, run)
	return evicted
}

// prune drops the decisions no replay can need any more: those whose successor was made more than the
// window ago (running time), so every record they governed is older than that.
func (st *State) prune(run, window int64) {
	i := 0
	for i+1 < len(st.Recent) && st.Recent[i+1].At+window < run {
		i++
	}
	if i > 0 {
		st.Recent = append(st.Recent[:0], st.Recent[i:]...)
	}
}

// openedIDs are the ids of a session the message msgID opens for key. The key is part of them: message
// ids are the connector's to choose, and two connectors (or two customers of one) that both number their
// messages "1", "2", ... must never open the same conversation. Both are replay-stable.
func openedIDs(key, msgID string) (channelSessionID, conversationID string) {
	return DeriveID("channelSession", key, msgID), DeriveID("conversation", key, msgID)
}

// IdleTimeouts resolves the idle timeout of a serviceIdentifier.
type IdleTimeouts func(serviceIdentifier string) time.Duration

// Fixed is one idle timeout for every channel.
func Fixed(d time.Duration) IdleTimeouts { return func(string) time.Duration { return d } }
