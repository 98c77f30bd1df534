package inbound

import (
	"cmp"
	"strconv"
	"strings"
	"time"

	"github.com/cimstream/cimstream/internal/session"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/pkg/cim"
)

// SessionObserver is told about session changes (metrics).
type SessionObserver interface {
	SessionOpened()
	SessionClosed(reason session.Reason)
	// SessionsActive adds delta to the count of active sessions this instance holds.
	SessionsActive(delta int)
	// UntrustedTime counts a record whose record time was not used as session time.
	UntrustedTime(reason string)
	// StateCorrupt counts a changelog record that could not be read on restore.
	StateCorrupt()
	// Replayed counts a record applied before; remembered is false when its first decision was
	// older than the remembered window (it got the current ids).
	Replayed(remembered bool)
	// DecisionsEvicted counts decisions dropped inside the replay window for room.
	DecisionsEvicted(n int)
	// StateTrimmed counts what the session state cap dropped beyond decisions: source partitions still
	// needed (TrimmedSources, n of them) or a whole state reset (TrimmedReset, n = 1).
	StateTrimmed(what string, n int)
	// WatermarkAge reports how far partition's upstream watermark trails the processing clock; a negative
	// age withdraws the partition.
	WatermarkAge(partition int, age time.Duration)
	// SessionEvent counts a lifecycle event written for the first time (reason "" when none).
	SessionEvent(event, reason string)
}

type nopSessions struct{}

func (nopSessions) SessionOpened()                  {}
func (nopSessions) SessionClosed(session.Reason)    {}
func (nopSessions) SessionsActive(int)              {}
func (nopSessions) UntrustedTime(string)            {}
func (nopSessions) StateCorrupt()                   {}
func (nopSessions) Replayed(bool)                   {}
func (nopSessions) DecisionsEvicted(int)            {}
func (nopSessions) StateTrimmed(string, int)        {}
func (nopSessions) WatermarkAge(int, time.Duration) {}
func (nopSessions) SessionEvent(string, string)     {}

// What the session state cap trims beyond decisions (SessionObserver.StateTrimmed).
const (
	TrimmedSources = "sources" // source partitions forgotten: their records' replays are applied anew
	TrimmedReset   = "reset"   // a state whose newest decisions did not fit, reset (see session.State.bound)
)

// trimmed reports what the bounds of a key's state dropped.
func (e *Enricher) trimmed(t session.Trimmed) {
	if t.Evicted > 0 {
		e.observer.DecisionsEvicted(t.Evicted)
	}
	if t.SourcesDropped > 0 {
		e.observer.StateTrimmed(TrimmedSources, t.SourcesDropped)
	}
	if t.Reset {
		e.observer.StateTrimmed(TrimmedReset, 1)
	}
}

// Reasons a record time is not trusted as session time.
const (
	UntrustedNotPositive = "not_positive" // no timestamp, 0, or before 1970
	UntrustedFuture      = "future"       // more than MaxFutureSkew ahead of the processing clock
)

// MaxFutureSkew is how far ahead of the processing clock a record time may be and still count as
// session time; one record dated years ahead must not keep its session open for good.
const MaxFutureSkew = time.Hour

// Enricher is stage 2 for one partition of the repartition topic. Its table is restored from the same
// partition of the sessions changelog before any record is processed.
type Enricher struct {
	topics    Topics
	changelog string
	partition int
	table     *session.Table
	observer  SessionObserver
	clock     func() time.Time
	active    int   // active sessions last reported to the observer
	latest    int64 // the partition's record time: the highest trusted session time applied
	// maxBytes is the largest record stage 1 writes: the inbound limit plus what normalizing adds.
	maxBytes int
	// upstream is the processing time before which every connector record is known to be applied on
	// this partition (epoch ms, see Watermarks); nil: the processing clock.
	upstream func() int64
	events   events
	// pending are events a restore repeats (proactive expiries whose event may not have landed), written
	// with the next output.
	pending []stream.Output
}

// NewEnricher returns stage 2 for one partition; observer and clock may be nil (no metrics, the wall
// clock).
func NewEnricher(topics Topics, changelog string, partition int, idle session.IdleTimeouts, observer SessionObserver, clock func() time.Time) *Enricher {
	if observer == nil {
		observer = nopSessions{}
	}
	if clock == nil {
		clock = time.Now
	}
	return &Enricher{topics: topics, changelog: changelog, partition: partition, table: session.NewTable(idle),
		observer: observer, clock: clock}
}

// WithUpstream sets how far the partition's input is known to have come (epoch ms); without it the
// processing clock stands in, as if nothing were ever held upstream.
func (e *Enricher) WithUpstream(upstream func() int64) *Enricher {
	e.upstream = upstream
	return e
}

// WithEvents turns the session lifecycle events on, to topic ("": off).
func (e *Enricher) WithEvents(topic string) *Enricher {
	e.events = events{topic: topic, observer: e.observer}
	return e
}

// WithMaxBytes sets the largest repartition record to decode: the inbound limit plus the enrichment
// headroom (cim.DefaultMaxBytes when not set).
func (e *Enricher) WithMaxBytes(n int) *Enricher {
	e.maxBytes = n
	return e
}

// WithReplayWindow sets how long (running time) a duplicate still gets its first copy's ids.
func (e *Enricher) WithReplayWindow(d time.Duration) *Enricher {
	e.table.WithReplayWindow(d)
	return e
}

// Restore applies one changelog record. A record that cannot be read is counted and skipped (its key
// starts fresh) and the error returned for the caller to log; it never stops the restore.
func (e *Enricher) Restore(key, value []byte) error {
	err := e.table.Restore(string(key), value, e.clock().UnixMilli())
	if err != nil {
		e.observer.StateCorrupt()
	}
	return err
}

// Restored finishes a restore: the partition's record time resumes from the latest activity held, and
// the expiry events of the replay window are queued again: the changelog cannot tell whether an event
// landed before its state did, so a restore repeats them (byte for byte; consumers dedupe on id).
func (e *Enricher) Restored() {
	e.table.Restored()
	e.latest = e.table.LatestActivity()
	if e.events.topic == "" {
		return
	}
	for _, c := range e.table.RecentExpiries() {
		e.pending = append(e.pending, e.events.expired(c))
	}
}

// Sessions is the number of keys held (for metrics and tests).
func (e *Enricher) Sessions() int { return e.table.Len() }

// Process enriches one repartitioned record: the output for the CCM and, for session messages, the new
// state for the changelog (written to this partition, so the state follows its input).
func (e *Enricher) Process(rec stream.Record) stream.Result {
	return e.ProcessMessage(rec, nil)
}

// ProcessMessage is Process with rec.Value already decoded as m (the fast path: the normalizer's
// output); a nil m, or a value over the size limit, is decoded (and refused) as Process does.
func (e *Enricher) ProcessMessage(rec stream.Record, m *cim.Message) stream.Result {
	var err error
	if m == nil || len(rec.Value) > cmp.Or(e.maxBytes, cim.DefaultMaxBytes) {
		if m, err = cim.DecodeLimits(rec.Value, cim.Limits{MaxBytes: e.maxBytes}); err != nil {
			// stage 1 wrote it; only a foreign producer on the internal topic gets here
			return stream.Reject(cim.ViolationOf(err))
		}
	}
	now := e.clock()
	sessionTime, outputTime := e.sessionTime(rec, now)
	key := string(rec.Key)
	if strings.HasPrefix(key, conversationKeyPrefix) || !m.HasChannelData() {
		return stream.Emit(append(e.takePending(), e.toCCM(rec, rec.Value, m.ConversationID(), outputTime))...)
	}
	sm := session.Message{
		Position:         sourcePosition(rec),
		Seq:              e.table.NextSeq(),
		ID:               m.ID(),
		Intent:           m.Intent(),
		TimeMillis:       sessionTime,
		ChannelSessionID: m.ChannelSessionID(),
		ConversationID:   m.ConversationID(),
		Passive:          m.BodyType() == "NOTIFICATION",
		EventMillis:      outputTime,
	}
	if e.events.topic != "" {
		sm.LoadData = func() session.Data { return sessionData(m) }
	}
	out := e.table.Apply(key, sm, now.UnixMilli())
	value := rec.Value
	if out.ConversationID != "" { // a NOTIFICATION outside a session passes without ids
		value, err = m.Encode(
			cim.Set(cim.StringValue(out.ChannelSessionID), "header", "channelSessionId"),
			cim.Set(cim.StringValue(out.ConversationID), "header", "conversationId"),
		)
		if err != nil {
			return stream.Reject(cim.Violation{Code: cim.CodeMalformed, Message: "enrichment failed: " + err.Error()})
		}
	}
	before, after := e.events.around(out, outputTime)
	outputs := append(append(e.takePending(), before...), e.toCCM(rec, value, cmp.Or(out.ConversationID, m.ConversationID(), key), outputTime))
	outputs = append(outputs, after...)
	if out.State != nil {
		outputs = append(outputs, stream.Output{Topic: e.changelog, Partition: e.partition, Key: rec.Key,
			Value: session.Encode(out.State), Time: time.UnixMilli(outputTime)})
	}
	e.trimmed(out.Trimmed)
	if out.Replayed {
		e.observer.Replayed(!out.Forgotten)
		return stream.Emit(outputs...)
	}
	if out.Closed != "" {
		e.observer.SessionClosed(out.Closed)
	}
	if out.Opened {
		e.observer.SessionOpened()
	}
	return stream.Emit(outputs...)
}

// sessionTime is the record time the session decision uses: the connector record's timestamp (carried
// by stage 1), unless it is not positive or too far ahead of the processing clock; then the partition's
// record time so far, or 0 (unknown: the decision does without) on a partition that has none yet.
// output is the output records' timestamp: the session time, or the processing clock when it is unknown.
func (e *Enricher) sessionTime(rec stream.Record, now time.Time) (ms, output int64) {
	ms = sourceTime(rec)
	switch {
	case ms <= 0:
		e.observer.UntrustedTime(UntrustedNotPositive)
	case ms > now.Add(MaxFutureSkew).UnixMilli():
		e.observer.UntrustedTime(UntrustedFuture)
	default:
		e.latest = max(e.latest, ms)
		return ms, ms
	}
	if e.latest > 0 {
		return e.latest, e.latest
	}
	return 0, now.UnixMilli()
}

// sourceTime is the connector record's timestamp in epoch ms (0 when it had none), from the header
// stage 1 sets, else this record's own.
func sourceTime(rec stream.Record) int64 {
	if v, ok := rec.Header(stream.HeaderSourceTimestamp); ok {
		if ms, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return ms
		}
	}
	return stream.Millis(rec.Time)
}

// sourcePosition names rec by the connector record stage 1 read (its source headers), so a duplicate
// written by either stage is recognised; a record without them is named by its own coordinates.
func sourcePosition(rec stream.Record) session.Position {
	if p, ok := sourceHeaders(rec); ok {
		return p
	}
	return session.Position{Source: rec.Topic + "/" + strconv.Itoa(rec.Partition), Offset: rec.Offset}
}

// sourceHeaders is the connector record ("topic/partition" and offset) that stage 1 named in a
// repartition record's source headers; false when a header is missing or the offset is no number.
func sourceHeaders(rec stream.Record) (session.Position, bool) {
	topic, okT := rec.Header(stream.HeaderSourceTopic)
	part, okP := rec.Header(stream.HeaderSourcePartition)
	off, okO := rec.Header(stream.HeaderSourceOffset)
	o, err := strconv.ParseInt(string(off), 10, 64)
	return session.Position{Source: string(topic) + "/" + string(part), Offset: o}, okT && okP && okO && err == nil
}

// Expire ends sessions idle past their timeout and forgets ended ones (see session.Table.Expire); it
// reports the active sessions. Time is measured up to the upstream watermark, so nothing expires while
// a customer's next record may still be held upstream.
func (e *Enricher) Expire(now time.Time) []stream.Output {
	upstream := now.UnixMilli()
	if e.upstream != nil {
		upstream = e.upstream()
		if upstream > 0 { // 0: nothing known yet, no age to tell
			e.observer.WatermarkAge(e.partition, time.Duration(max(0, now.UnixMilli()-upstream))*time.Millisecond)
		}
	}
	outs := e.takePending()
	for _, c := range e.table.Expire(now.UnixMilli(), upstream) {
		o := stream.Output{Topic: e.changelog, Partition: e.partition, Key: []byte(c.Key), Time: now}
		if c.State != nil {
			o.Value = session.Encode(c.State)
		}
		if c.Expired {
			e.observer.SessionClosed(session.ReasonIdle)
			if e.events.topic != "" {
				outs = append(outs, e.events.expired(c))
				e.events.count(false, EventExpired, session.ReasonIdle)
			}
		}
		e.trimmed(c.Trimmed)
		outs = append(outs, o)
	}
	active := e.table.Active()
	e.observer.SessionsActive(active - e.active)
	e.active = active
	return outs
}

// takePending returns the events a restore queued, once.
func (e *Enricher) takePending() []stream.Output {
	p := e.pending
	e.pending = nil
	return p
}

func (e *Enricher) toCCM(rec stream.Record, value []byte, key string, sessionTime int64) stream.Output {
	return stream.Output{Topic: e.topics.CCM, Partition: stream.ByKey, Key: []byte(key), Value: value, Headers: rec.Headers,
		Time: time.UnixMilli(sessionTime)}
}

// Close withdraws this partition's sessions from the active count (the partition moved or stopped).
func (e *Enricher) Close() {
	e.observer.SessionsActive(-e.active)
	e.active = 0
	if e.upstream != nil {
		e.observer.WatermarkAge(e.partition, -1)
	}
}
