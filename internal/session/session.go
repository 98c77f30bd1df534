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
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Namespace for the ids cimstream derives (UUIDv5).
var Namespace = uuid.MustParse("6b0e2f61-93a4-4c51-9f0e-4d2b8a7c3e15")

// DeriveID returns a UUIDv5 of parts, for ids that must come out the same every time.
func DeriveID(parts ...string) string {
	name := make([]byte, 0, 64)
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
	colon := strings.IndexByte(key, ':')
	if colon <= 0 {
		return ""
	}
	n, err := strconv.Atoi(key[:colon])
	if err != nil || n < 0 || colon+1+n > len(key) {
		return ""
	}
	return key[colon+1 : colon+1+n]
}

// A state remembers its recent decisions (id changes and ends), to answer a replayed record with the
// ids it got the first time. A decision governs every record applied after it until the next one, so it
// is needed until every record it governed can no longer come back: it is dropped once the next decision
// is older than the replay window, measured on the partition's running clock (Table.running), which
// stands still while the partition is not processed, so an outage does not age the decisions a restart
// replays. recentLimit bounds memory and changelog values for a key that makes many decisions within
// one window (a backlog of short conversations); dropping one inside its window is reported (Evicted).
const recentLimit = 64

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
	// Seq is the repartition offset of the latest record applied: restore keeps the state with the
	// highest, whatever order the changelog records landed in.
	Seq int64 `json:"q"`
	// Running is the partition's running clock (ms) at the latest change; a restore resumes the clock
	// from the highest of them.
	Running int64 `json:"p,omitempty"`
	// Sources are the source partitions ("topic/partition") this key's records came from, and Applied
	// the highest source offset applied from each: a record at or below it was applied before.
	Sources []string `json:"src,omitempty"`
	Applied []int64  `json:"a,omitempty"`
	// Recent are the latest decisions, oldest first.
	Recent []Decision `json:"r,omitempty"`
}

// Decision gives the ids of the records applied after it: those whose source offset exceeds After
// (indexed like State.Sources; a missing entry is -1). Empty ids mean no session.
type Decision struct {
	After            []int64 `json:"a,omitempty"`
	ChannelSessionID string  `json:"s"`
	ConversationID   string  `json:"c"`
	// At is the partition's running clock (ms) when the decision was made.
	At int64 `json:"p,omitempty"`
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
	Seq      int64 // offset on the repartition partition
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
}

// Outcome is the decision for one message.
type Outcome struct {
	ChannelSessionID string // "" for a passive message outside a session
	ConversationID   string
	Opened           bool   // a new session began with this message
	Closed           Reason // a session ended (before this message, or with it for END_CHAT)
	Replayed         bool   // the message was applied before; state unchanged
	// Forgotten marks a replay older than every remembered decision: answered with the current ids.
	Forgotten bool
	// Evicted counts decisions dropped inside the replay window because the key made more than
	// recentLimit of them: a replay of what they governed would be answered with later ids.
	Evicted int
	State   *State // the state to persist (nil when unchanged)
}

// Apply decides the ids of m for key; nowMillis is the processing clock, used only to schedule
// proactive expiry (see Expire).
func (t *Table) Apply(key string, m Message, nowMillis int64) Outcome {
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
		sid, cid := m.ChannelSessionID, m.ConversationID
		if sid == "" {
			sid = pick(active, st, true, m.ID)
		}
		if cid == "" {
			cid = pick(active, st, false, m.ID)
		}
		if active && (sid != st.ChannelSessionID || cid != st.ConversationID) {
			out.Closed = ReasonAdopted
		}
		out.Opened = !active || out.Closed != ""
		out.ChannelSessionID, out.ConversationID = sid, cid
	case m.Intent == "START_CHAT" || m.Intent == "START_CONVERSATION":
		if active {
			out.Closed = ReasonStartChat
		}
		out.Opened = true
		out.ChannelSessionID, out.ConversationID = DeriveID("channelSession", m.ID), DeriveID("conversation", m.ID)
	case active:
		out.ChannelSessionID, out.ConversationID = st.ChannelSessionID, st.ConversationID
	default:
		if st != nil && st.Open {
			out.Closed = ReasonIdle
		}
		out.Opened = true
		out.ChannelSessionID, out.ConversationID = DeriveID("channelSession", m.ID), DeriveID("conversation", m.ID)
	}

	if e == nil {
		e = t.add(key, &State{})
		st = &e.State
	}
	if out.Opened || st.ChannelSessionID != out.ChannelSessionID || st.ConversationID != out.ConversationID || len(st.Recent) == 0 {
		out.Evicted += st.remember(out.ChannelSessionID, out.ConversationID, run, t.window) // governs this record and the ones after
	}
	last := st.LastActivity
	st.ChannelSessionID, st.ConversationID = out.ChannelSessionID, out.ConversationID
	st.Open, st.Ended = true, ""
	st.LastActivity = m.TimeMillis
	if !out.Opened && last > st.LastActivity {
		st.LastActivity = last // out-of-order timestamps (and unknown ones) never shorten a session
	}
	st.applied(m, run)
	if m.Intent == "END_CHAT" {
		out.Closed = ReasonEndChat
		st.Open, st.Ended = false, ReasonEndChat
		out.Evicted += st.remember("", "", run, t.window) // governs the records after the END_CHAT, not the END_CHAT itself
	}
	t.touch(e, nowMillis)
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
	case st.Open:
		st.Open, st.Ended = false, ReasonIdle
		out.Evicted += st.remember("", "", run, t.window)
		out.Closed = ReasonIdle
	}
	st.applied(m, run)
	t.touchPassive(e, nowMillis)
	out.State = st
	return out
}

// replay answers a record applied before with the decision that governed it.
func (e *entry) replay(src int, offset int64) Outcome {
	st := &e.State
	for i := len(st.Recent) - 1; i >= 0; i-- {
		d := st.Recent[i]
		after := int64(-1)
		if src < len(d.After) {
			after = d.After[src]
		}
		if offset > after {
			return Outcome{ChannelSessionID: d.ChannelSessionID, ConversationID: d.ConversationID, Replayed: true}
		}
	}
	// Older than anything remembered: answer with the current ids rather than rewrite history.
	return Outcome{ChannelSessionID: st.ChannelSessionID, ConversationID: st.ConversationID, Replayed: true, Forgotten: true}
}

// source returns the index of src in Sources, or -1.
func (st *State) source(src string) int {
	for i, s := range st.Sources {
		if s == src {
			return i
		}
	}
	return -1
}

// applied records m as applied at running time run.
func (st *State) applied(m Message, run int64) {
	st.Running = max(st.Running, run)
	i := st.source(m.Position.Source)
	if i < 0 {
		st.Sources = append(st.Sources, m.Position.Source)
		st.Applied = append(st.Applied, m.Position.Offset)
	} else if m.Position.Offset > st.Applied[i] {
		st.Applied[i] = m.Position.Offset
	}
	st.Seq = max(st.Seq, m.Seq)
}

// remember adds a decision that governs every record applied from now on, at running time run. When the
// key holds recentLimit decisions the oldest go; it returns how many of those were still inside the
// window.
func (st *State) remember(sid, cid string, run, window int64) (evicted int) {
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
	st.Recent = append(st.Recent, Decision{After: append([]int64(nil), st.Applied...), ChannelSessionID: sid, ConversationID: cid, At: run})
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

func pick(active bool, st *State, session bool, msgID string) string {
	switch {
	case active && session:
		return st.ChannelSessionID
	case active:
		return st.ConversationID
	case session:
		return DeriveID("channelSession", msgID)
	default:
		return DeriveID("conversation", msgID)
	}
}

// IdleTimeouts resolves the idle timeout of a serviceIdentifier.
type IdleTimeouts func(serviceIdentifier string) time.Duration

// Fixed is one idle timeout for every channel.
func Fixed(d time.Duration) IdleTimeouts { return func(string) time.Duration { return d } }
