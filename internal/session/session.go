// Package session decides the channel session and conversation of each inbound message. It is pure
// logic: a Table holds the sessions of one partition, Apply decides for one message and returns the
// state to persist; the changelog and the broker are someone else's business.
//
// Every decision is a function of the previous state and the message (its id, intent, carried ids, time
// and input offset), never of the wall clock, so reprocessing after a crash gives the same ids.
package session

import (
	"encoding/json"
	"strconv"
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

// recentLimit is how many id changes a state remembers, to answer a replayed record with the ids it got
// the first time (records processed but not yet committed when an instance died). Each entry covers
// every offset from its own up to the next entry's, so a few entries span far more than the
// uncommitted tail of a key.
const recentLimit = 4

// State is what is stored per key in the changelog.
type State struct {
	ChannelSessionID string `json:"s"`
	ConversationID   string `json:"c"`
	Open             bool   `json:"open"`
	// LastActivity is the time (epoch ms) of the latest message, from the record, not the wall clock.
	LastActivity int64 `json:"t"`
	// Applied is the highest input offset applied; Recent are the latest id changes: from Offset on
	// (until the next entry), messages of this key got these ids.
	Applied int64      `json:"o"`
	Recent  []Decision `json:"r,omitempty"`
}

// Decision is the ids given to the messages from Offset on.
type Decision struct {
	Offset           int64  `json:"o"`
	ChannelSessionID string `json:"s"`
	ConversationID   string `json:"c"`
}

// Reason says why a session ended, for metrics.
type Reason string

const (
	ReasonIdle      Reason = "idle"
	ReasonEndChat   Reason = "end_chat"
	ReasonStartChat Reason = "start_chat"
	ReasonAdopted   Reason = "adopted" // the message carried other ids
)

// Message is what a decision needs to know about one inbound message.
type Message struct {
	Offset           int64
	ID               string
	Intent           string
	TimeMillis       int64
	ChannelSessionID string // carried by the message, "" when absent
	ConversationID   string
}

// Outcome is the decision for one message.
type Outcome struct {
	ChannelSessionID string
	ConversationID   string
	Opened           bool   // a new session began with this message
	Closed           Reason // a session ended (before this message, or with it for END_CHAT)
	Replayed         bool   // the message was applied before; state unchanged
	State            *State // the state to persist (nil when unchanged)
}

// Table holds the sessions of one input partition.
type Table struct {
	idle     time.Duration
	sessions map[string]*State
}

// NewTable returns an empty table with the idle timeout.
func NewTable(idle time.Duration) *Table {
	return &Table{idle: idle, sessions: map[string]*State{}}
}

// Len is the number of keys held.
func (t *Table) Len() int { return len(t.sessions) }

// Restore loads one changelog record; a nil value (tombstone) deletes the key.
func (t *Table) Restore(key string, value []byte) error {
	if value == nil {
		delete(t.sessions, key)
		return nil
	}
	var st State
	if err := json.Unmarshal(value, &st); err != nil {
		return err
	}
	t.sessions[key] = &st
	return nil
}

// Encode serializes a state for the changelog: the same JSON encoding/json would write for State, built
// by hand because it runs once per inbound message.
func Encode(st *State) []byte {
	b := make([]byte, 0, 96+len(st.Recent)*96)
	b = append(b, `{"s":`...)
	b = appendString(b, st.ChannelSessionID)
	b = append(b, `,"c":`...)
	b = appendString(b, st.ConversationID)
	b = append(b, `,"open":`...)
	b = strconv.AppendBool(b, st.Open)
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, st.LastActivity, 10)
	b = append(b, `,"o":`...)
	b = strconv.AppendInt(b, st.Applied, 10)
	if len(st.Recent) > 0 {
		b = append(b, `,"r":[`...)
		for i, d := range st.Recent {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"o":`...)
			b = strconv.AppendInt(b, d.Offset, 10)
			b = append(b, `,"s":`...)
			b = appendString(b, d.ChannelSessionID)
			b = append(b, `,"c":`...)
			b = appendString(b, d.ConversationID)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// appendString writes s as a JSON string (ids are usually plain ASCII; anything else is escaped).
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// Active counts open sessions whose last activity is within the idle timeout of nowMillis.
func (t *Table) Active(nowMillis int64) int {
	n := 0
	for _, st := range t.sessions {
		if st.Open && nowMillis-st.LastActivity <= t.idle.Milliseconds() {
			n++
		}
	}
	return n
}

// Apply decides the ids of m for key.
func (t *Table) Apply(key string, m Message) Outcome {
	st := t.sessions[key]
	if st != nil && m.Offset <= st.Applied {
		for i := len(st.Recent) - 1; i >= 0; i-- {
			if d := st.Recent[i]; d.Offset <= m.Offset {
				return Outcome{ChannelSessionID: d.ChannelSessionID, ConversationID: d.ConversationID, Replayed: true}
			}
		}
		// Older than anything remembered: answer with the current ids rather than rewrite history.
		return Outcome{ChannelSessionID: st.ChannelSessionID, ConversationID: st.ConversationID, Replayed: true}
	}

	var out Outcome
	active := st != nil && st.Open && m.TimeMillis-st.LastActivity <= t.idle.Milliseconds()
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

	next := st
	if next == nil {
		next = &State{}
	}
	last := next.LastActivity
	next.ChannelSessionID, next.ConversationID = out.ChannelSessionID, out.ConversationID
	next.Open = m.Intent != "END_CHAT"
	next.LastActivity = m.TimeMillis
	next.Applied = m.Offset
	if st != nil && !out.Opened && last > next.LastActivity {
		next.LastActivity = last // out-of-order timestamps never shorten a session
	}
	if m.Intent == "END_CHAT" {
		out.Closed = ReasonEndChat
	}
	// Remember an id change (kept in place: the oldest goes when the window is full).
	if n := len(next.Recent); n == 0 || next.Recent[n-1].ChannelSessionID != out.ChannelSessionID || next.Recent[n-1].ConversationID != out.ConversationID {
		if n >= recentLimit {
			copy(next.Recent, next.Recent[1:])
			next.Recent = next.Recent[:recentLimit-1]
		}
		next.Recent = append(next.Recent, Decision{Offset: m.Offset, ChannelSessionID: out.ChannelSessionID, ConversationID: out.ConversationID})
	}
	t.sessions[key] = next
	out.State = next
	return out
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

// Expired removes and returns the keys whose sessions ended (idle past the timeout, or closed) more than
// the idle timeout before nowMillis; the caller writes their tombstones. Keeping closed sessions for one
// more timeout lets a replayed END_CHAT find the ids it was given.
func (t *Table) Expired(nowMillis int64) []string {
	var keys []string
	limit := 2 * t.idle.Milliseconds()
	for k, st := range t.sessions {
		if nowMillis-st.LastActivity > limit {
			keys = append(keys, k)
			delete(t.sessions, k)
		}
	}
	return keys
}
