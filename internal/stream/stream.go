// Package stream holds cimstream's own record types, so pipeline logic is written and tested without
// a broker; only internal/kafkaedge translates them to and from kafka-go.
package stream

import (
	"time"
)

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
	// HashKey, when set, chooses the partition instead of Key: the repartition topic is keyed by session
	// but partitioned by customer, the key connectors partition by, so their records are already home.
	HashKey []byte
	Value   []byte // nil is a tombstone
	Headers []Header
	Time    time.Time
}

// Size is the bytes the output holds in memory and on the wire, roughly (key, value and headers).
func (o Output) Size() int {
	n := len(o.Key) + len(o.Value)
	for _, h := range o.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// Size is the bytes the record holds in memory, roughly (key, value and headers).
func (r Record) Size() int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// Result is what a stage makes of one input record: the records to write, and the reasons the input is
// dead-lettered (a Process Result's Outputs are then ignored). The runner settles the input once every
// record of its Result was acknowledged.
type Result struct {
	Outputs []Output
	Reject  Violations
	// DeadLetterValue is the value the dead letter carries instead of the input's (nil: the input's): a
	// record made of the input that could not be written, such as a connector's notification.
	DeadLetterValue []byte
}

// Reject is the Result of an input that goes to the dead-letter topic for vs.
func Reject(vs ...Violation) Result { return Result{Reject: vs} }

// Emit is the Result of an input that produced outs.
func Emit(outs ...Output) Result { return Result{Outputs: outs} }

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

// Millis is t in epoch ms, 0 for the zero time (kafka-go's "no timestamp") or anything before 1970.
func Millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return max(0, t.UnixMilli())
}
