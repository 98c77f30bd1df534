// Package stream holds cimstream's own record types, so pipeline logic is written and tested without
// a broker; only internal/consumer translates them to and from kafka-go.
package stream

import "time"

// Header is a record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is one consumed record with its coordinates.
type Record struct {
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
	Time      time.Time
}

// Output is one record to produce. Partition < 0 lets the key choose the partition (Murmur2, as the
// Java client); Partition >= 0 writes to that partition (state changelogs follow their input partition).
type Output struct {
	Topic     string
	Partition int
	Key       []byte
	Value     []byte // nil is a tombstone
	Headers   []Header
	Time      time.Time
	// Source is the offset of the input record this output comes from, so a write that fails for good
	// can be reported against the right message.
	Source int64
}

// ByKey is the Partition value that lets the key decide.
const ByKey = -1

// Header returns the value of the first header named key.
func (r Record) Header(key string) ([]byte, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return h.Value, true
		}
	}
	return nil, false
}

// Source headers name the record an output came from (for dead letters and tracing).
const (
	HeaderSourceTopic     = "cimstream.source.topic"
	HeaderSourcePartition = "cimstream.source.partition"
	HeaderSourceOffset    = "cimstream.source.offset"
	// HeaderSourceTimestamp is the connector record's timestamp in epoch ms (0 when it had none), which
	// the sessions stage decides by; the repartition record's own timestamp cannot say "none".
	HeaderSourceTimestamp = "cimstream.source.timestamp"
)

// Millis is t in epoch ms, 0 for the zero time (kafka-go's "no timestamp") or anything before 1970.
func Millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return max(0, t.UnixMilli())
}
