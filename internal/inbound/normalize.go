// Package inbound is the connector → CCM pipeline, in two stages:
//
//  1. Normalizer (stateless) reads the connector topics: validates, dead-letters what is invalid, fills
//     id, timestamp, sender type and customer, sends connector receipts to the notifications topic, and
//     re-keys everything else by customer onto the internal repartition topic.
//  2. Enricher (stateful) reads the repartition topic, one session table per partition backed by the
//     compacted sessions changelog, sets channelSessionId and conversationId, and publishes to the CCM.
//
// Re-keying makes sessions independent of how connectors key or partition their records: a customer's
// messages meet in one partition of the repartition topic, owned by one instance at a time.
package inbound

import (
	"cmp"
	"strconv"
	"strings"

	"github.com/cimstream/cimstream/internal/session"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/internal/stream/deadletter"
	"github.com/cimstream/cimstream/pkg/cim"
)

// Topics are the outputs of the inbound pipeline.
type Topics struct {
	Repartition   string
	CCM           string
	Notifications string
}

// Observer is told what happened to each record (metrics); every method must be cheap. Dead letters
// are counted by the stage runtime, which writes them.
type Observer interface {
	UnknownIntent(stage string)
	// Routed counts channel records taken where they are by the fast path (home) and sent through the
	// repartition topic (repartitioned).
	Routed(home, repartitioned int)
}

type nopObserver struct{}

func (nopObserver) UnknownIntent(string) {}
func (nopObserver) Routed(int, int)      {}

// Normalizer is stage 1.
type Normalizer struct {
	topics   Topics
	limits   cim.Limits
	observer Observer
	// bySession partitions the repartition topic by the whole session key, as before the fast path
	// (inbound.fastPath off): a rolling upgrade keeps every customer's state where it is.
	bySession bool
}

// PartitionBySession makes the repartition topic partitioned by session key instead of customer (the
// layout without the fast path).
func (n *Normalizer) PartitionBySession() *Normalizer {
	n.bySession = true
	return n
}

// NewNormalizer returns stage 1; observer may be nil.
func NewNormalizer(topics Topics, maxBytes int, observer Observer) *Normalizer {
	if observer == nil {
		observer = nopObserver{}
	}
	return &Normalizer{topics: topics, limits: cim.Limits{MaxBytes: maxBytes}, observer: observer}
}

// WithMaxIDBytes bounds the identifying strings (inbound.maxIdBytes; 0: cim.DefaultMaxIDBytes).
func (n *Normalizer) WithMaxIDBytes(max int) *Normalizer {
	n.limits.MaxIDBytes = max
	return n
}

// Process handles one connector record: a rejection (the runtime dead-letters it), or exactly one
// output, a notification or a record for the repartition topic.
func (n *Normalizer) Process(rec stream.Record) stream.Result {
	res, _ := n.process(rec, false)
	return res
}

// process is Process; with parsed, it also returns the output's value decoded (nil when there is none),
// for the fast path to enrich without decoding it again.
func (n *Normalizer) process(rec stream.Record, parsed bool) (stream.Result, *cim.Message) {
	m, vs := cim.DecodeAndValidate(rec.Value, n.limits, cim.Inbound)
	if len(vs) > 0 {
		return stream.Result{Reject: vs}, nil
	}
	if cim.UnknownIntent(m) {
		n.observer.UnknownIntent("inbound-ingest")
	}
	value, normalized, err := encode(m, normalizeEdits(m, rec), parsed)
	if err != nil { // the edits only touch objects validation guarantees; this is a bug, not bad input
		return stream.Reject(cim.Violation{Code: cim.CodeMalformed, Message: "normalization failed: " + err.Error()}), nil
	}
	// cimstream's headers are cimstream's to set: the runtime renames those a connector record carries as
	// it reads a channel topic; renaming here too keeps the rule for any caller (a no-op then).
	own, _ := stream.RenameReserved(rec.Headers)
	headers := make([]stream.Header, 0, len(own)+4)
	headers = append(headers, own...)
	headers = append(headers, deadletter.SourceHeaders(rec)...)
	out := stream.Output{Partition: stream.ByKey, Value: value, Headers: headers, Time: rec.Time}
	switch {
	case m.BodyType() == "DELIVERYNOTIFICATION":
		// A connector's receipt is not customer activity: it goes to the notifications topic without
		// touching sessions, keyed like the conversation it belongs to.
		out.Topic = n.topics.Notifications
		out.Key = []byte(cmp.Or(m.ConversationID(), m.ChannelCustomerIdentifier(), string(rec.Key)))
	case m.HasChannelData():
		out.Topic = n.topics.Repartition
		out.Key = []byte(session.Key(m.ServiceIdentifier(), m.ChannelCustomerIdentifier()))
		if !n.bySession {
			// Partitioned by customer alone: the partition a connector keying by
			// channelCustomerIdentifier already put the record on, so the fast path can take it there.
			out.HashKey = []byte(m.ChannelCustomerIdentifier())
		}
	default: // a reply inside an existing conversation: keyed by it, passes stage 2 unchanged
		out.Topic = n.topics.Repartition
		out.Key = []byte(conversationKeyPrefix + m.ConversationID())
	}
	if out.Topic == n.topics.Repartition {
		out.Headers = append(out.Headers, stream.Header{Key: stream.HeaderSourceTimestamp,
			Value: strconv.AppendInt(nil, stream.Millis(rec.Time), 10)})
	}
	return stream.Emit(out), normalized
}

// encode applies the edits; with parsed, it also gives the result decoded (nil when Edited cannot
// tell it without parsing again: the caller then decodes the bytes as any reader would).
func encode(m *cim.Message, edits []cim.Edit, parsed bool) ([]byte, *cim.Message, error) {
	if parsed {
		if e, err := m.Edited(edits...); err == nil {
			return e.Raw(), e, nil
		}
	}
	value, err := m.Encode(edits...)
	return value, nil, err
}

// CheckLimits decodes and validates value as an inbound message exactly as the pipeline does, with the
// pipeline's limits (inbound.maxMessageBytes and inbound.maxIdBytes): no violations means the pipeline
// accepts it. The dead-letter replay re-validates with it.
func CheckLimits(value []byte, limits cim.Limits) cim.Violations {
	_, vs := cim.DecodeAndValidate(value, limits, cim.Inbound)
	return vs
}

// conversationKeyPrefix marks repartition keys of messages without channelData. Session keys start with
// a digit (their length prefix), so the two never collide.
const conversationKeyPrefix = "conversation:"

// normalizeEdits are the stateless fills of contract section 3.
func normalizeEdits(m *cim.Message, rec stream.Record) []cim.Edit {
	edits := make([]cim.Edit, 0, 4)
	if !m.Has("id") {
		edits = append(edits, cim.Set(cim.StringValue(session.DeriveID("message", rec.Topic, strconv.Itoa(rec.Partition),
			strconv.FormatInt(rec.Offset, 10))), "id"))
	}
	ts, ok := m.TimestampMillis()
	if !ok {
		// The record's timestamp; a record without one (0, or negative on the wire) gives 0, never a
		// negative value, and the same value every time the record is read.
		ts = stream.Millis(rec.Time)
	}
	if raw := m.RawValue("header", "timestamp"); string(raw) != strconv.FormatInt(ts, 10) {
		edits = append(edits, cim.Set(cim.IntValue(ts), "header", "timestamp"))
	}
	if st, _ := m.String("header", "sender", "type"); st != strings.ToUpper(st) {
		edits = append(edits, cim.Set(cim.StringValue(strings.ToUpper(st)), "header", "sender", "type"))
	}
	if !m.Has("header", "customer") && m.HasChannelData() {
		name := m.CustomerName()
		customer := []byte(`{"id":`)
		customer = cim.AppendString(customer, session.DeriveID("customer", m.ServiceIdentifier(), m.ChannelCustomerIdentifier()))
		customer = append(customer, `,"firstName":`...)
		customer = cim.AppendString(customer, name)
		customer = append(customer, `,"isAnonymous":`...)
		customer = strconv.AppendBool(customer, name == "")
		customer = append(customer, '}')
		edits = append(edits, cim.Set(customer, "header", "customer"))
	}
	return edits
}
