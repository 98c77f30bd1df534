// Package deadletter builds dead-letter records: the original key, value and headers unchanged, plus
// headers saying what was wrong and where the record came from.
package deadletter

import (
	"strconv"
	"strings"

	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/pkg/cim"
)

// Headers added to every dead letter.
const (
	HeaderCodes    = "cimstream.error.codes"  // distinct violation codes, comma-separated
	HeaderDetail   = "cimstream.error.detail" // every violation as "path: code: sentence", "; "-separated
	HeaderPipeline = "cimstream.pipeline"     // inbound or outbound
)

// maxDetail bounds the detail header: a message with thousands of violations must not make a record the
// broker refuses.
const maxDetail = 8 << 10

// New returns the dead letter of rec for topic.
func New(topic, pipeline string, rec stream.Record, violations cim.Violations) stream.Output {
	detail := violations.Error()
	if len(detail) > maxDetail {
		detail = detail[:maxDetail-3] + "..."
	}
	headers := make([]stream.Header, 0, len(rec.Headers)+6)
	headers = append(headers, rec.Headers...)
	headers = append(headers,
		stream.Header{Key: HeaderCodes, Value: []byte(strings.Join(violations.Codes(), ","))},
		stream.Header{Key: HeaderDetail, Value: []byte(detail)},
		stream.Header{Key: HeaderPipeline, Value: []byte(pipeline)},
	)
	headers = append(headers, SourceHeaders(rec)...)
	// Source names the input, so a write of the dead letter that fails is reported against its own
	// message, never against whichever message sits at offset 0.
	return stream.Output{Topic: topic, Partition: stream.ByKey, Key: rec.Key, Value: rec.Value, Headers: headers, Time: rec.Time,
		Source: rec.Offset}
}

// SourceHeaders name rec's topic, partition and offset.
func SourceHeaders(rec stream.Record) []stream.Header {
	return []stream.Header{
		{Key: stream.HeaderSourceTopic, Value: []byte(rec.Topic)},
		{Key: stream.HeaderSourcePartition, Value: []byte(strconv.Itoa(rec.Partition))},
		{Key: stream.HeaderSourceOffset, Value: []byte(strconv.FormatInt(rec.Offset, 10))},
	}
}
