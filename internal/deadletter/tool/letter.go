// Package tool holds the dead-letter tools: inspect (read the dead-letter topic, filter, count by code,
// source topic, pipeline and age, list as JSON lines) and replay (re-produce chosen dead letters to
// their source topic or another, re-validated, guarded against loops, resumable, with an exact
// account). Kafka is reached through the Broker interface, so the logic is tested without one;
// KafkaBroker implements it with internal/kafkaedge.
package tool

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/internal/stream/deadletter"
)

// Headers the replay adds to a replayed record, and to the markers it writes to the dead-letter topic
// (named in internal/stream with every other cimstream header).
const (
	HeaderReplayCount = stream.HeaderReplayCount
	HeaderReplayOf    = stream.HeaderReplayOf
	HeaderMarker      = stream.HeaderReplayMarker
	// HeaderReplayIntent names the replay batch that wrote a replayed record.
	HeaderReplayIntent = stream.HeaderReplayIntent
)

// Letter is a dead letter read from the dead-letter topic, split into the original record and what the
// pipeline added.
type Letter struct {
	Record stream.Record // as read from the dead-letter topic
	// Original is the original record's headers: everything before the dead letter's own headers.
	Original []stream.Header
	Codes    []string
	Detail   string
	Pipeline string
	// Source names the record that was dead-lettered (topic "" when the headers are missing).
	SourceTopic     string
	SourcePartition int
	SourceOffset    int64
	// Truncated is set when the value (or value and headers) was cut: such a dead letter cannot be
	// replayed faithfully. OriginalSize is the value's size before the cut.
	Truncated    string
	OriginalSize int
	// ReplayCount is how many replays of the same record failed again before this dead letter, counted
	// from the dead-letter topic's own records (ledger.replays), never from a header a connector could
	// write; Parse leaves it 0, the tools set it.
	ReplayCount int
	// ReplayOf and ReplayIntent are the dead letter the original record claims to be a replay of, and the
	// replay batch that claims to have written it (its replay headers, as written or renamed at the entry):
	// a claim the ledger checks against its done markers, not a fact.
	ReplayOf, ReplayIntent string
	// MessageID is the CIM message's top-level id, when the value is a JSON object that has one.
	MessageID string
	// OriginalTime is the original record's timestamp, which a replay gives back (zero: it had none). A
	// dead letter's own timestamp is when cimstream wrote it; one written before dead letters were stamped
	// so has only the original's, and OriginalTime is that.
	OriginalTime time.Time
}

// Parse reads rec as a dead letter. ok is false for records that are not dead letters (replay markers,
// anything else written to the topic).
//
// A dead letter is the original headers followed by cimstream's: codes, detail, pipeline, source
// topic/partition/offset and, when cut, original size and truncation. The split is at the last codes
// header, so an original record that itself carried cimstream headers (a dead letter of a replayed
// record, whose original went through the pipeline) keeps them as original headers.
func Parse(rec stream.Record) (l Letter, ok bool) {
	if _, marker := markerKind(rec); marker {
		return Letter{}, false
	}
	at := -1
	for i, h := range rec.Headers {
		if h.Key == deadletter.HeaderCodes {
			at = i
		}
	}
	if at < 0 {
		return Letter{}, false
	}
	l = Letter{Record: rec, Original: rec.Headers[:at:at], SourcePartition: -1, SourceOffset: -1}
	stamped := false
	for _, h := range rec.Headers[at:] {
		v := string(h.Value)
		switch h.Key {
		case deadletter.HeaderCodes:
			for _, c := range strings.Split(v, ",") {
				if c = strings.TrimSpace(c); c != "" {
					l.Codes = append(l.Codes, c)
				}
			}
		case deadletter.HeaderDetail:
			l.Detail = v
		case deadletter.HeaderPipeline:
			l.Pipeline = v
		case stream.HeaderSourceTopic:
			l.SourceTopic = v
		case stream.HeaderSourcePartition:
			if n, err := strconv.Atoi(v); err == nil {
				l.SourcePartition = n
			}
		case stream.HeaderSourceOffset:
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				l.SourceOffset = n
			}
		case deadletter.HeaderTruncated:
			l.Truncated = v
		case deadletter.HeaderOriginalSize:
			l.OriginalSize, _ = strconv.Atoi(v)
		case deadletter.HeaderOriginalTime:
			stamped = true
			if ms, err := strconv.ParseInt(v, 10, 64); err == nil && ms > 0 {
				l.OriginalTime = time.UnixMilli(ms)
			}
		}
	}
	for _, h := range l.Original {
		switch h.Key { // the last one: a replay appends its own
		case HeaderReplayOf, stream.RenamedPrefix + HeaderReplayOf:
			l.ReplayOf = string(h.Value)
		case HeaderReplayIntent, stream.RenamedPrefix + HeaderReplayIntent:
			l.ReplayIntent = string(h.Value)
		}
	}
	if !stamped {
		l.OriginalTime = rec.Time
	}
	l.MessageID = messageID(rec.Value)
	return l, true
}

// markerKind is the kind of a replay marker ("intent" or "done"); ok is false for every other record. A
// marker is exactly what the replay writes, its one header and nothing else: a dead letter always has
// codes and source headers, so a dead letter whose original carried a marker header (written before the
// entries renamed such headers) is still a dead letter, not bookkeeping.
func markerKind(rec stream.Record) (kind string, ok bool) {
	if len(rec.Headers) != 1 || rec.Headers[0].Key != HeaderMarker {
		return "", false
	}
	return string(rec.Headers[0].Value), true
}

// messageID is the top-level "id" of a JSON object value, "" when there is none or it is not a string.
func messageID(value []byte) string {
	if len(bytes.TrimSpace(value)) == 0 || bytes.TrimSpace(value)[0] != '{' {
		return ""
	}
	var v struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(value, &v) != nil {
		return ""
	}
	var s string
	if json.Unmarshal(v.ID, &s) != nil {
		return ""
	}
	return s
}

// Origin names the original record of the dead letter: the pipeline and the source topic, partition
// and offset. Two dead letters of the same original (an at-least-once pipeline wrote it twice after a
// crash) have the same Origin, so a replay replays only one of them. A dead letter without source
// headers is its own original, named by its place in the dead-letter topic dlqTopic.
func (l Letter) Origin(dlqTopic string) string {
	if l.SourceTopic == "" || l.SourcePartition < 0 || l.SourceOffset < 0 {
		return originOf(dlqTopic, l.Record.Partition, l.Record.Offset)
	}
	return l.Pipeline + " " + Ref(l.SourceTopic, l.SourcePartition, l.SourceOffset)
}

// originOf is the Origin of a dead letter known only by its place in the dead-letter topic.
func originOf(dlqTopic string, partition int, offset int64) string {
	return "dead letter " + Ref(dlqTopic, partition, offset)
}

// Ref names a dead letter by its place in the dead-letter topic, as HeaderReplayOf carries it.
func Ref(topic string, partition int, offset int64) string {
	return topic + "/" + strconv.Itoa(partition) + "/" + strconv.FormatInt(offset, 10)
}

// Age is how old the dead letter is at now, by its own timestamp: when cimstream wrote it (the
// original's for a dead letter written before they were stamped); a record without a timestamp counts as 0.
func (l Letter) Age(now time.Time) time.Duration {
	if l.Record.Time.IsZero() || l.Record.Time.Unix() <= 0 {
		return 0
	}
	return max(0, now.Sub(l.Record.Time))
}

// HasCode says whether code is among the dead letter's codes.
func (l Letter) HasCode(code string) bool { return slices.Contains(l.Codes, code) }
