package stream

import "strings"

// Every record header cimstream writes is named here, under Namespace. The namespace belongs to
// cimstream: a record read from outside (a connector topic, the CCM's outbound topic) that carries a
// header in it has that header renamed at the entry (RenameReserved), so no output, dead letter or tool
// ever acts on a forged one.
const (
	// Namespace is the prefix of cimstream's header names.
	Namespace = "cimstream."
	// RenamedPrefix is put in front of a reserved header name a record from outside carried:
	// "cimstream.event" arrives as "x-original-cimstream.event", kept for the record's owner, read by nobody.
	RenamedPrefix = "x-original-"
)

// Source headers name the record an output came from (for dead letters and tracing).
const (
	HeaderSourceTopic     = "cimstream.source.topic"
	HeaderSourcePartition = "cimstream.source.partition"
	HeaderSourceOffset    = "cimstream.source.offset"
	// HeaderSourceTimestamp is the connector record's timestamp in epoch ms (0 when it had none), which
	// the sessions stage decides by; the repartition record's own timestamp cannot say "none".
	HeaderSourceTimestamp = "cimstream.source.timestamp"
)

// HeaderEvent names the event type on a session lifecycle event record, so consumers tell events from
// messages without parsing the value.
const HeaderEvent = "cimstream.event"

// Dead-letter headers, added after the original record's own (internal/deadletter writes them).
const (
	HeaderErrorCodes  = "cimstream.error.codes"  // distinct violation codes, comma-separated
	HeaderErrorDetail = "cimstream.error.detail" // every violation as "path: code: sentence", "; "-separated
	HeaderPipeline    = "cimstream.pipeline"     // inbound, outbound or egress
	// HeaderOriginalSize is the original value's length in bytes, set when the value was cut.
	HeaderOriginalSize = "cimstream.original.size"
	// HeaderOriginalTimestamp is the original record's timestamp in epoch ms (0: it had none). A dead
	// letter is stamped with the time it was written, not the connector's time, so retention, --since and
	// the age buckets go by a clock cimstream trusts; a replay gives the record its original time back.
	HeaderOriginalTimestamp = "cimstream.original.timestamp"
	// HeaderTruncated says what was cut: "value" or "value,headers".
	HeaderTruncated = "cimstream.truncated"
	// HeaderValueMissing ("true") marks the dead letter of a record that had no value left (retention, a
	// tombstone): its own value is empty, not null, so it is no tombstone on the dead-letter topic.
	HeaderValueMissing = "cimstream.value.missing"
)

// Replay headers (internal/deadletter/tool writes them).
const (
	// HeaderReplayCount is how many times a replayed record has been replayed; for people reading the
	// topic: the loop guard counts from the dead-letter topic's own markers, not from this header.
	HeaderReplayCount = "cimstream.replay.count"
	// HeaderReplayOf names the dead letter a record replayed from the dead-letter topic came from:
	// "<topic>/<partition>/<offset>".
	HeaderReplayOf = "cimstream.replay.of"
	// HeaderReplayIntent is the id of the replay batch (its intent marker in the dead-letter topic) that
	// wrote a replayed record: the loop guard and the recovery of an interrupted batch accept a record as a
	// replay only with it, and the id exists nowhere but in the dead-letter topic.
	HeaderReplayIntent = "cimstream.replay.intent"
	// HeaderReplayMarker marks a replay's bookkeeping record in the dead-letter topic: "intent" or "done".
	HeaderReplayMarker = "cimstream.replay.marker"
)

// Reserved reports whether a header name is in cimstream's namespace.
func Reserved(key string) bool { return strings.HasPrefix(key, Namespace) }

// RenameReserved returns hs with every reserved header renamed (RenamedPrefix + name), and how many
// were. When none is, hs itself is returned: the common case allocates nothing.
func RenameReserved(hs []Header) ([]Header, int) {
	first := -1
	for i, h := range hs {
		if Reserved(h.Key) {
			first = i
			break
		}
	}
	if first < 0 {
		return hs, 0
	}
	out := make([]Header, len(hs))
	copy(out, hs)
	n := 0
	for i := first; i < len(out); i++ {
		if Reserved(out[i].Key) {
			out[i].Key = RenamedPrefix + out[i].Key
			n++
		}
	}
	return out, n
}
