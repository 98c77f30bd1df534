package inbound

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"

	"github.com/cimstream/cimstream/internal/session"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/pkg/cim"
)

// Session lifecycle events (contract section 3), in Expertflow CX's notificationType vocabulary.
const (
	EventStarted = "CHANNEL_SESSION_STARTED"
	EventEnded   = "CHANNEL_SESSION_ENDED"
	EventExpired = "CHANNEL_SESSION_EXPIRED"
)

// HeaderEvent names the event type on an event record.
const HeaderEvent = stream.HeaderEvent

// EventSender is the sender of every event.
const EventSender = "cimstream"

// ReasonCode is the reasonCode an event gives for a session's end.
func ReasonCode(r session.Reason) string {
	switch r {
	case session.ReasonIdle:
		return "CUSTOMER_INACTIVITY_TIMEOUT"
	case session.ReasonEndChat:
		return "END_CHAT"
	case session.ReasonStartChat:
		return "NEW_SESSION_STARTED"
	case session.ReasonAdopted:
		return "SESSION_IDS_CHANGED"
	}
	return string(r)
}

// endEvent is the event that tells why a session ended: EXPIRED for inactivity, ENDED otherwise.
func endEvent(r session.Reason) string {
	if r == session.ReasonIdle {
		return EventExpired
	}
	return EventEnded
}

// events builds lifecycle event records for one topic.
type events struct {
	topic    string          // "" when events are off
	observer SessionObserver // counts the events written the first time (replays repeat them uncounted)
}

// event is one lifecycle event of the session sid/cid at record time ms. Its id is derived from the
// session's ids, the message that opened it (two openings of the same ids are two sessions) and the
// event, and its bytes from nothing else than the arguments, so a replay repeats it byte for byte.
func (ev events) event(kind string, sid, cid string, data session.Data, reason session.Reason, ms int64) stream.Output {
	b := make([]byte, 0, 512+len(data.ChannelData)+len(data.Customer))
	b = append(b, `{"id":`...)
	b = cim.AppendString(b, session.DeriveID(sid, cid, data.Opener, kind))
	b = append(b, `,"header":{"sender":{"id":"`+EventSender+`","type":"SYSTEM","senderName":"`+EventSender+`"},"channelData":`...)
	b = appendRaw(b, data.ChannelData)
	b = append(b, `,"customer":`...)
	b = appendRaw(b, data.Customer)
	b = append(b, `,"channelSessionId":`...)
	b = cim.AppendString(b, sid)
	b = append(b, `,"conversationId":`...)
	b = cim.AppendString(b, cid)
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, ms, 10)
	b = append(b, `,"intent":null},"body":{"type":"NOTIFICATION","notificationType":"`...)
	b = append(b, kind...)
	b = append(b, '"')
	if reason != "" {
		b = append(b, `,"notificationData":{"reasonCode":`...)
		b = cim.AppendString(b, ReasonCode(reason))
		b = append(b, '}')
	}
	b = append(b, "}}"...)
	return stream.Output{Topic: ev.topic, Partition: stream.ByKey, Key: []byte(cid), Value: b, Time: time.UnixMilli(ms),
		Headers: []stream.Header{{Key: HeaderEvent, Value: []byte(kind)}}}
}

func appendRaw(b, raw []byte) []byte {
	if len(raw) == 0 {
		return append(b, "null"...)
	}
	return append(b, raw...)
}

// around returns the events of one decision in the order the CCM must see them relative to the
// message: the end of the session before it and the start of its own before it, the end of its own
// (END_CHAT) after it. ms is the message's record time, for events that have no time of their own.
func (ev events) around(out session.Outcome, ms int64) (before, after []stream.Output) {
	if ev.topic == "" {
		return nil, nil
	}
	if out.Closed != "" && out.Previous.ChannelSessionID != "" {
		at := positive(out.ClosedAt, ms)
		kind := endEvent(out.Closed)
		before = append(before, ev.event(kind, out.Previous.ChannelSessionID, out.Previous.ConversationID, out.Previous.Data, out.Closed, at))
		ev.count(out.Replayed, kind, out.Closed)
	}
	if out.Opened {
		before = append(before, ev.event(EventStarted, out.ChannelSessionID, out.ConversationID, out.Data, "", positive(out.Data.OpenedAt, ms)))
		ev.count(out.Replayed, EventStarted, "")
	}
	if out.Ended {
		after = append(after, ev.event(EventEnded, out.ChannelSessionID, out.ConversationID, out.Data, session.ReasonEndChat, positive(out.EndedAt, ms)))
		ev.count(out.Replayed, EventEnded, session.ReasonEndChat)
	}
	return before, after
}

// expired is the event of a proactive expiry.
func (ev events) expired(c session.Change) stream.Output {
	return ev.event(EventExpired, c.Previous.ChannelSessionID, c.Previous.ConversationID, c.Previous.Data, session.ReasonIdle, c.ClosedAt)
}

func (ev events) count(replayed bool, kind string, reason session.Reason) {
	if !replayed {
		ev.observer.SessionEvent(kind, ReasonCode(reason))
	}
}

// positive is ms, or fallback when ms is not a time (0 from a state written before it was kept).
func positive(ms, fallback int64) int64 {
	if ms > 0 {
		return ms
	}
	return fallback
}

// MaxSessionData bounds the channelData and customer a session keeps for its events (they travel in
// every changelog record of the key, up to one per decision in the replay window): larger ones are cut
// down to the identifying fields.
const MaxSessionData = 4 << 10

// sessionData is what a message that opens a session keeps for its events: its channelData and
// customer, compacted as encoding/json would write them.
func sessionData(m *cim.Message) session.Data {
	d := session.Data{ChannelData: compact(m.RawValue("header", "channelData")), Customer: compact(m.RawValue("header", "customer"))}
	if len(d.ChannelData)+len(d.Customer) <= MaxSessionData {
		return d
	}
	cd := append([]byte(`{"serviceIdentifier":`), cim.AppendString(nil, m.ServiceIdentifier())...)
	cd = append(append(append(cd, `,"channelCustomerIdentifier":`...), cim.AppendString(nil, m.ChannelCustomerIdentifier())...), '}')
	d.ChannelData, d.Customer = cd, nil
	if id, ok := m.String("header", "customer", "id"); ok && len(id) <= MaxSessionData/2 {
		d.Customer = append(append([]byte(`{"id":`), cim.AppendString(nil, id)...), '}')
	}
	return d
}

func compact(raw []byte) json.RawMessage {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil
	}
	var buf, escaped bytes.Buffer
	buf.Grow(len(raw))
	if json.Compact(&buf, raw) != nil {
		return nil
	}
	json.HTMLEscape(&escaped, buf.Bytes())
	return escaped.Bytes()
}
