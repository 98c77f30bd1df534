package inbound

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/session"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/pkg/cim"
)

type eventCounts struct {
	nopSessions
	events map[string]int
}

func (c *eventCounts) SessionEvent(event, reason string) { c.events[event+"/"+reason]++ }

// newEventPipe is a pipe with events on, to the CCM topic.
func newEventPipe(t *testing.T, idle time.Duration) (*pipe, *eventCounts) {
	obs := &eventCounts{events: map[string]int{}}
	p := newPipe(t, idle, obs)
	p.e.WithEvents(testTopics.CCM)
	return p, obs
}

// seen is one CCM record as the CCM would read it: an event (its type) or a message (its text).
type seen struct {
	Event, Reason, Text, Conversation, Session string
	Time                                       int64
}

func (s seen) String() string {
	if s.Event != "" {
		return fmt.Sprintf("%s(%s %s)@%d", s.Event, s.Reason, s.Conversation[:min(8, len(s.Conversation))], s.Time)
	}
	return fmt.Sprintf("%q(%s)", s.Text, s.Conversation[:min(8, len(s.Conversation))])
}

func ccmView(t *testing.T, outs []stream.Output) []seen {
	t.Helper()
	var got []seen
	for _, o := range outs {
		if o.Topic != testTopics.CCM {
			continue
		}
		var v struct {
			Header struct {
				ChannelSessionID string `json:"channelSessionId"`
				ConversationID   string `json:"conversationId"`
				Timestamp        int64  `json:"timestamp"`
			} `json:"header"`
			Body struct {
				NotificationType string `json:"notificationType"`
				MarkdownText     string `json:"markdownText"`
				NotificationData struct {
					ReasonCode string `json:"reasonCode"`
				} `json:"notificationData"`
			} `json:"body"`
		}
		if err := json.Unmarshal(o.Value, &v); err != nil {
			t.Fatalf("%s: %v", o.Value, err)
		}
		if v.Header.ConversationID != "" && string(o.Key) != v.Header.ConversationID {
			t.Fatalf("output keyed %q, conversationId %q", o.Key, v.Header.ConversationID)
		}
		if ev, ok := header(o.Headers, HeaderEvent); ok != (v.Body.NotificationType != "" && strings.HasPrefix(v.Body.NotificationType, "CHANNEL_SESSION_")) || ev != v.Body.NotificationType && ok {
			t.Fatalf("event header %q does not match %s", ev, o.Value)
		}
		event := v.Body.NotificationType
		if !strings.HasPrefix(event, "CHANNEL_SESSION_") {
			event = ""
		}
		got = append(got, seen{Event: event, Reason: v.Body.NotificationData.ReasonCode, Text: v.Body.MarkdownText,
			Conversation: v.Header.ConversationID, Session: v.Header.ChannelSessionID, Time: v.Header.Timestamp})
	}
	return got
}

func header(hs []stream.Header, key string) (string, bool) {
	for _, h := range hs {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

func text(customer, t, extra string) string {
	return `{"header":{"sender":{"id":"w","type":"CONNECTOR","senderName":"W"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"` +
		customer + `","customerFirstName":"Ann"}` + extra + `},"body":{"type":"PLAIN","markdownText":"` + t + `"}}`
}

// The CCM sees STARTED before a session's first message, ENDED after its END_CHAT, EXPIRED when the
// next message finds it idle, ENDED when a START_CHAT replaces it; every event a valid CIM message.
func TestEventsAroundMessages(t *testing.T) {
	p, obs := newEventPipe(t, time.Minute)
	base := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	var outs []stream.Output
	send := func(off int64, value string, at time.Duration) {
		outs = append(outs, p.e.Process(p.repartition(connectorRecord(off, value, base.Add(at)))).Outputs...)
	}
	send(1, text("a", "hello", ""), 0)
	send(2, text("a", "again", ""), 30*time.Second)
	send(3, text("a", "late", ""), 30*time.Second+time.Minute+time.Millisecond) // idle gap
	send(4, text("a", "new", `,"intent":"START_CHAT"`), 2*time.Minute)
	send(5, text("a", "bye", `,"intent":"END_CHAT"`), 3*time.Minute)
	got := ccmView(t, outs)
	want := []string{EventStarted, "hello", "again", EventExpired, EventStarted, "late", EventEnded, EventStarted, "new", "bye", EventEnded}
	if len(got) != len(want) {
		t.Fatalf("CCM saw %v, want %v", got, want)
	}
	for i, w := range want {
		if got[i].Event != w && got[i].Text != w {
			t.Fatalf("CCM record %d is %v, want %s (all: %v)", i, got[i], w, got)
		}
	}
	// Each event belongs to the session of the messages around it.
	if got[0].Conversation != got[1].Conversation || got[3].Conversation != got[1].Conversation || got[4].Conversation != got[5].Conversation ||
		got[6].Conversation != got[5].Conversation || got[7].Conversation != got[8].Conversation || got[10].Conversation != got[9].Conversation {
		t.Fatalf("events carry the wrong session: %v", got)
	}
	reasons := map[int]string{3: "CUSTOMER_INACTIVITY_TIMEOUT", 6: "NEW_SESSION_STARTED", 10: "END_CHAT"}
	for i, r := range reasons {
		if got[i].Reason != r {
			t.Errorf("%v: reason %q, want %q", got[i], got[i].Reason, r)
		}
	}
	// Times: EXPIRED at last activity + timeout, STARTED at its message, ENDED at the message ending it.
	if want := base.Add(30*time.Second + time.Minute).UnixMilli(); got[3].Time != want {
		t.Errorf("EXPIRED at %d, want %d", got[3].Time, want)
	}
	if got[4].Time != got[5].Time || got[6].Time != got[8].Time || got[10].Time != got[9].Time {
		t.Errorf("event times: %v", got)
	}
	for _, o := range outs {
		if _, ok := header(o.Headers, HeaderEvent); !ok {
			continue
		}
		m, err := cim.Decode(o.Value)
		if err != nil {
			t.Fatalf("event %s: %v", o.Value, err)
		}
		if vs := cim.Validate(m, cim.Inbound); len(vs) > 0 {
			t.Fatalf("event %s is not a valid CIM message: %v", o.Value, vs)
		}
		if !bytes.Contains(o.Value, []byte(`"customerFirstName":"Ann"`)) || !bytes.Contains(o.Value, []byte(`"sender":{"id":"cimstream","type":"SYSTEM"`)) {
			t.Fatalf("event without the session's channelData or the SYSTEM sender: %s", o.Value)
		}
	}
	if obs.events[EventStarted+"/"] != 3 || obs.events[EventExpired+"/CUSTOMER_INACTIVITY_TIMEOUT"] != 1 || obs.events[EventEnded+"/END_CHAT"] != 1 ||
		obs.events[EventEnded+"/NEW_SESSION_STARTED"] != 1 {
		t.Fatalf("events counted: %v", obs.events)
	}
}

// No event for a message without channelData, a NOTIFICATION outside a session, or a NOTIFICATION
// inside one.
func TestNoEventsForPassiveTraffic(t *testing.T) {
	p, _ := newEventPipe(t, time.Minute)
	now := p.clk.now
	reply := `{"header":{"sender":{"id":"w","type":"CONNECTOR","senderName":"W"},"conversationId":"conv-1"},"body":{"type":"PLAIN","markdownText":"x"}}`
	typing := `{"header":{"sender":{"id":"w","type":"CONNECTOR","senderName":"W"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"t"}},"body":{"type":"NOTIFICATION","notificationType":"TYPING_STARTED"}}`
	var outs []stream.Output
	for i, v := range []string{reply, typing} {
		outs = append(outs, p.e.Process(p.repartition(connectorRecord(int64(i+1), v, now))).Outputs...)
	}
	for _, s := range ccmView(t, outs) {
		if s.Event != "" {
			t.Fatalf("event for passive traffic: %v", s)
		}
	}
	open := p.e.Process(p.repartition(connectorRecord(3, text("t", "hi", ""), now))).Outputs
	inside := p.e.Process(p.repartition(connectorRecord(4, typing, now))).Outputs
	if n := len(ccmView(t, open)); n != 2 {
		t.Fatalf("STARTED and the message: %d records", n)
	}
	if v := ccmView(t, inside); len(v) != 1 || v[0].Event != "" {
		t.Fatalf("a NOTIFICATION inside a session gets no event: %v", v)
	}
}

// A session that idles out with no other traffic expires proactively; the event is the one the next
// message would have produced in a backlog, byte for byte.
func TestProactiveExpiryEventEqualsBacklogEvent(t *testing.T) {
	live, _ := newEventPipe(t, time.Minute)
	start := live.clk.now
	live.e.Process(live.repartition(connectorRecord(1, text("q", "hi", ""), start)))
	live.clk.now = start.Add(time.Minute + time.Second)
	var liveEvent []byte
	for _, o := range live.e.Expire(live.clk.now) {
		if o.Topic == testTopics.CCM {
			liveEvent = o.Value
		}
	}
	if liveEvent == nil {
		t.Fatal("no EXPIRED event from proactive expiry")
	}
	// The same traffic hours old, followed by the customer's next message: no proactive expiry, the
	// next message finds the session idle.
	backlog, _ := newEventPipe(t, time.Minute)
	backlog.e.Process(backlog.repartition(connectorRecord(1, text("q", "hi", ""), start)))
	var backlogEvent []byte
	for _, o := range backlog.e.Process(backlog.repartition(connectorRecord(2, text("q", "next", ""), start.Add(2*time.Minute)))).Outputs {
		if ev, _ := header(o.Headers, HeaderEvent); ev == EventExpired {
			backlogEvent = o.Value
		}
	}
	if !bytes.Equal(liveEvent, backlogEvent) {
		t.Fatalf("live and backlog EXPIRED differ:\n%s\n%s", liveEvent, backlogEvent)
	}
}

// After a restore from the changelog, replayed records repeat their events byte for byte, and the
// proactive expiries of the replay window are written again.
func TestEventsAfterRestoreAreIdentical(t *testing.T) {
	p, _ := newEventPipe(t, time.Minute)
	base := p.clk.now
	var records []stream.Record
	var first [][]byte
	changelog := map[string][]byte{}
	keep := func(outs []stream.Output) {
		for _, o := range outs {
			switch {
			case o.Topic == "sessions":
				changelog[string(o.Key)] = o.Value
			default:
				if _, ok := header(o.Headers, HeaderEvent); ok {
					first = append(first, o.Value)
				}
			}
		}
	}
	values := []string{text("r", "a", ""), text("r", "b", `,"intent":"END_CHAT"`), text("r", "c", ""), text("s", "d", `,"intent":"START_CHAT"`),
		text("s", "e", `,"intent":"START_CHAT"`), text("q", "quiet", "")}
	for i, v := range values {
		r := p.repartition(connectorRecord(int64(i+1), v, base.Add(time.Duration(i)*time.Second)))
		records = append(records, r)
		keep(p.e.Process(r).Outputs)
	}
	p.clk.now = base.Add(2 * time.Minute)
	keep(p.e.Expire(p.clk.now)) // q (and c, e) expire proactively
	var expired [][]byte
	for _, v := range first {
		if bytes.Contains(v, []byte(EventExpired)) {
			expired = append(expired, v)
		}
	}
	if len(expired) != 3 {
		t.Fatalf("want 3 proactive expiries, got %d", len(expired))
	}

	restored, _ := newEventPipe(t, time.Minute)
	restored.clk.now = base.Add(3 * time.Minute)
	for k, v := range changelog {
		if err := restored.e.Restore([]byte(k), v); err != nil {
			t.Fatal(err)
		}
	}
	restored.e.Restored()
	var again [][]byte
	for _, r := range records { // the whole tail again, as after a crash before the commit
		for _, o := range restored.e.Process(r).Outputs {
			if _, ok := header(o.Headers, HeaderEvent); ok {
				again = append(again, o.Value)
			}
		}
	}
	// Restore repeats the expiries first, then each record its own events.
	if !reflect.DeepEqual(sorted(again), sorted(first)) {
		t.Fatalf("events after restore differ:\nfirst %s\nagain %s", bytes.Join(first, []byte("\n")), bytes.Join(again, []byte("\n")))
	}

	// Beyond the replay window a restore repeats nothing.
	late, _ := newEventPipe(t, time.Minute)
	late.e.WithReplayWindow(time.Minute)
	for k, v := range changelog {
		st := decodeState(t, v)
		for i := range st.Recent {
			st.Recent[i].At -= 10 * time.Minute.Milliseconds()
		}
		st.Running += 0 // the restored clock stays where the newest state left it
		if err := late.e.Restore([]byte(k), session.Encode(&st)); err != nil {
			t.Fatal(err)
		}
	}
	late.e.Restored()
	if n := len(late.e.pending); n != 0 {
		t.Fatalf("expiries older than the replay window repeated: %d", n)
	}
}

func decodeState(t *testing.T, v []byte) session.State {
	var st session.State
	if err := json.Unmarshal(v, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func sorted(vs [][]byte) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	slices.Sort(out)
	return out
}

// eventsOf returns the event records among outs.
func eventsOf(outs []stream.Output) []stream.Output {
	var evs []stream.Output
	for _, o := range outs {
		if _, ok := header(o.Headers, HeaderEvent); ok {
			evs = append(evs, o)
		}
	}
	return evs
}

// A record without a trusted time opens and ends a session; its duplicate, processed later (the clock
// and the partition's record time moved), repeats the events byte for byte.
func TestReplayOfAnUntimedRecordRepeatsItsEvents(t *testing.T) {
	p, _ := newEventPipe(t, time.Minute)
	rec := p.repartition(connectorRecord(1, text("u", "bye", `,"intent":"END_CHAT"`), time.Time{}))
	first := eventsOf(p.e.Process(rec).Outputs)
	if len(first) != 2 {
		t.Fatalf("STARTED and ENDED, got %d events", len(first))
	}
	p.clk.now = p.clk.now.Add(5 * time.Second)
	p.e.Process(p.repartition(connectorRecord(2, text("other", "later", ""), p.clk.now.Add(10*time.Minute))))
	again := eventsOf(p.e.Process(rec).Outputs)
	if len(again) != 2 || !bytes.Equal(first[0].Value, again[0].Value) || !bytes.Equal(first[1].Value, again[1].Value) {
		t.Fatalf("replay events differ:\n%s\n%s", bytes.Join(valuesOf(first), []byte("\n")), bytes.Join(valuesOf(again), []byte("\n")))
	}
	for _, o := range again {
		if o.Time.UnixMilli() <= 0 {
			t.Fatalf("event dated %v", o.Time)
		}
	}
}

func valuesOf(outs []stream.Output) [][]byte {
	var vs [][]byte
	for _, o := range outs {
		vs = append(vs, o.Value)
	}
	return vs
}

// Two sessions never share an event id: not when a message carries only a new conversationId (the
// channelSessionId is kept), nor when old ids are carried again after the session ended.
func TestEventIDsAreUniquePerSession(t *testing.T) {
	p, _ := newEventPipe(t, time.Hour)
	now := p.clk.now
	var outs []stream.Output
	for i, v := range []string{
		text("x", "hi", ""),
		text("x", "moved", `,"conversationId":"conv-2"`),
		text("x", "bye", `,"intent":"END_CHAT"`),
		text("x", "back", `,"channelSessionId":"S","conversationId":"C"`),
		text("x", "bye2", `,"intent":"END_CHAT"`),
		text("x", "again", `,"channelSessionId":"S","conversationId":"C"`),
		text("x", "bye3", `,"intent":"END_CHAT"`),
	} {
		outs = append(outs, p.e.Process(p.repartition(connectorRecord(int64(i+1), v, now.Add(time.Duration(i)*time.Second)))).Outputs...)
	}
	ids := map[string]string{}
	for _, o := range eventsOf(outs) {
		var v struct{ ID string }
		_ = json.Unmarshal(o.Value, &v)
		if prev, dup := ids[v.ID]; dup {
			t.Fatalf("event id %s used twice:\n%s\n%s", v.ID, prev, o.Value)
		}
		ids[v.ID] = string(o.Value)
	}
	if len(ids) != 8 { // 4 sessions, each STARTED and an end
		t.Fatalf("%d distinct events, want 8", len(ids))
	}
}

// A session's channelData and customer are kept within MaxSessionData: a huge one is cut down to the
// identifying fields, so the changelog record stays small whatever the message carries.
func TestHugeSessionDataIsCutDown(t *testing.T) {
	p, _ := newEventPipe(t, time.Hour)
	huge := strings.Repeat("x", 300<<10)
	v := text("h", "hi", `,"customer":{"id":"cust-h","firstName":"`+huge+`"}`)
	v = strings.Replace(v, `"customerFirstName":"Ann"`, `"customerFirstName":"Ann","note":"`+huge+`"`, 1)
	var changelog, started []byte
	for i := range 4 {
		for _, o := range p.e.Process(p.repartition(connectorRecord(int64(i+1), strings.Replace(v, `"markdownText":"hi"`, `"markdownText":"hi","x":1`, 1), p.clk.now))).Outputs {
			switch ev, _ := header(o.Headers, HeaderEvent); {
			case o.Topic == "sessions":
				changelog = o.Value
			case ev == EventStarted:
				started = o.Value
			}
		}
		p.clk.now = p.clk.now.Add(2 * time.Hour)
	}
	if len(changelog) > 4*(MaxSessionData+1024) {
		t.Fatalf("changelog value of %d bytes", len(changelog))
	}
	if !bytes.Contains(started, []byte(`"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"h"}`)) ||
		!bytes.Contains(started, []byte(`"customer":{"id":"cust-h"}`)) {
		t.Fatalf("cut-down session data: %.300s", started)
	}
}

// Session data with characters encoding/json escapes (<, >, &, U+2028) is kept as encoding/json would
// write it, so the changelog encoder stays equal to encoding/json.
func TestSessionDataIsEncodedAsEncodingJSON(t *testing.T) {
	m, err := cim.Decode([]byte(text("a<b>&c\u2028", "hi", "")))
	if err != nil {
		t.Fatal(err)
	}
	st := &session.State{ChannelSessionID: "s", ConversationID: "c", Recent: []session.Decision{{ChannelSessionID: "s", ConversationID: "c", Data: sessionData(m)}}}
	want, _ := json.Marshal(st)
	if got := session.Encode(st); !bytes.Equal(got, want) {
		t.Fatalf("Encode = %s\njson   = %s", got, want)
	}
}
