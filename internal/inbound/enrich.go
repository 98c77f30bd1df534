package inbound

import (
	"strings"
	"time"

	"github.com/cimstream/cimstream/internal/deadletter"
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
}

type nopSessions struct{}

func (nopSessions) SessionOpened()               {}
func (nopSessions) SessionClosed(session.Reason) {}
func (nopSessions) SessionsActive(int)           {}

// Enricher is stage 2 for one partition of the repartition topic. Its table is restored from the same
// partition of the sessions changelog before any record is processed.
type Enricher struct {
	topics    Topics
	changelog string
	partition int
	table     *session.Table
	observer  SessionObserver
	active    int // active sessions last reported to the observer
}

// NewEnricher returns stage 2 for one partition; observer may be nil.
func NewEnricher(topics Topics, changelog string, partition int, idle time.Duration, observer SessionObserver) *Enricher {
	if observer == nil {
		observer = nopSessions{}
	}
	return &Enricher{topics: topics, changelog: changelog, partition: partition, table: session.NewTable(idle), observer: observer}
}

// Restore applies one changelog record.
func (e *Enricher) Restore(key, value []byte) error { return e.table.Restore(string(key), value) }

// Sessions is the number of keys held (for metrics and tests).
func (e *Enricher) Sessions() int { return e.table.Len() }

// Process enriches one repartitioned record: the output for the CCM and, for session messages, the new
// state for the changelog (written to this partition, so the state follows its input).
func (e *Enricher) Process(rec stream.Record) []stream.Output {
	m, err := cim.Decode(rec.Value)
	if err != nil { // stage 1 wrote it; only a foreign producer on the internal topic gets here
		return []stream.Output{deadletter.New(e.topics.DeadLetter, "inbound", rec, cim.Violations{err.(*cim.DecodeError).Violation})}
	}
	key := string(rec.Key)
	if strings.HasPrefix(key, conversationKeyPrefix) || !m.HasChannelData() {
		return []stream.Output{e.toCCM(rec, rec.Value, m.ConversationID())}
	}
	out := e.table.Apply(key, session.Message{
		Offset:           rec.Offset,
		ID:               m.ID(),
		Intent:           m.Intent(),
		TimeMillis:       rec.Time.UnixMilli(),
		ChannelSessionID: m.ChannelSessionID(),
		ConversationID:   m.ConversationID(),
	})
	value, err := m.Encode(
		cim.Set(cim.StringValue(out.ChannelSessionID), "header", "channelSessionId"),
		cim.Set(cim.StringValue(out.ConversationID), "header", "conversationId"),
	)
	if err != nil {
		return []stream.Output{deadletter.New(e.topics.DeadLetter, "inbound", rec,
			cim.Violations{{Code: cim.CodeMalformed, Message: "enrichment failed: " + err.Error()}})}
	}
	outputs := []stream.Output{e.toCCM(rec, value, out.ConversationID)}
	if out.State != nil {
		outputs = append(outputs, stream.Output{Topic: e.changelog, Partition: e.partition, Key: rec.Key,
			Value: session.Encode(out.State), Time: rec.Time})
	}
	if !out.Replayed {
		if out.Closed != "" {
			e.observer.SessionClosed(out.Closed)
		}
		if out.Opened {
			e.observer.SessionOpened()
		}
	}
	return outputs
}

// Expire returns tombstones for sessions over long enough to forget (see session.Table.Expired), and
// reports the active sessions.
func (e *Enricher) Expire(now time.Time) []stream.Output {
	active := e.table.Active(now.UnixMilli())
	e.observer.SessionsActive(active - e.active)
	e.active = active
	var outs []stream.Output
	for _, key := range e.table.Expired(now.UnixMilli()) {
		outs = append(outs, stream.Output{Topic: e.changelog, Partition: e.partition, Key: []byte(key), Time: now})
	}
	return outs
}

func (e *Enricher) toCCM(rec stream.Record, value []byte, conversationID string) stream.Output {
	return stream.Output{Topic: e.topics.CCM, Partition: stream.ByKey, Key: []byte(conversationID), Value: value, Headers: rec.Headers, Time: rec.Time}
}

// Close withdraws this partition's sessions from the active count (the partition moved or stopped).
func (e *Enricher) Close() {
	e.observer.SessionsActive(-e.active)
	e.active = 0
}
