// Package deadletter builds dead-letter records: the original key, value and headers, plus headers
// saying what was wrong and where the record came from. A value larger than the configured cap is
// truncated (with a header for its original size), and a dead letter the broker still refuses is
// shrunk further (Shrink), so a bad record never blocks its partition.
package deadletter

import (
	"strconv"
	"strings"
	"time"

	"github.com/cimstream/cimstream/internal/stream"
)

// Headers added to every dead letter (named in internal/stream with every other cimstream header).
const (
	HeaderCodes        = stream.HeaderErrorCodes
	HeaderDetail       = stream.HeaderErrorDetail
	HeaderPipeline     = stream.HeaderPipeline
	HeaderOriginalSize = stream.HeaderOriginalSize
	HeaderTruncated    = stream.HeaderTruncated
	HeaderOriginalTime = stream.HeaderOriginalTimestamp
)

// maxDetail bounds the detail header: a message with thousands of violations must not make a record the
// broker refuses.
const maxDetail = 8 << 10

// shortDetail is the detail kept by the last shrink step.
const shortDetail = 256

// DefaultMaxValueBytes is the default cap on a dead letter's value: well under the 1 MiB
// max.message.bytes a dead-letter topic has by default, leaving room for the headers.
const DefaultMaxValueBytes = 512 << 10

// Builder builds dead letters for one topic.
type Builder struct {
	Topic    string
	Pipeline string
	// MaxValueBytes caps the value kept (0: DefaultMaxValueBytes).
	MaxValueBytes int
	// Now stamps the dead letter (nil: time.Now). The original's timestamp is a connector's to choose
	// (1970, 2100): a dead letter carrying it could be deleted by retention at once or hide from --since.
	Now func() time.Time
}

// Build returns the dead letter of rec for violations.
func (b Builder) Build(rec stream.Record, violations stream.Violations) stream.Output {
	detail := violations.Error()
	if len(detail) > maxDetail {
		detail = detail[:maxDetail-3] + "..."
	}
	limit := b.MaxValueBytes
	if limit <= 0 {
		limit = DefaultMaxValueBytes
	}
	value := rec.Value
	headers := make([]stream.Header, 0, len(rec.Headers)+8)
	headers = append(headers, rec.Headers...)
	headers = append(headers,
		stream.Header{Key: HeaderCodes, Value: []byte(strings.Join(violations.Codes(), ","))},
		stream.Header{Key: HeaderDetail, Value: []byte(detail)},
		stream.Header{Key: HeaderPipeline, Value: []byte(b.Pipeline)},
	)
	headers = append(headers, SourceHeaders(rec)...)
	headers = append(headers, stream.Header{Key: HeaderOriginalTime, Value: strconv.AppendInt(nil, stream.Millis(rec.Time), 10)})
	if len(value) > limit {
		value = value[:limit]
		headers = append(headers,
			stream.Header{Key: HeaderOriginalSize, Value: []byte(strconv.Itoa(len(rec.Value)))},
			stream.Header{Key: HeaderTruncated, Value: []byte("value")})
	}
	now := time.Now
	if b.Now != nil {
		now = b.Now
	}
	if value == nil {
		// A record without a value (a tombstone, or one retention deleted before its turn): a null value
		// would make the dead letter a tombstone, which compaction and consumers of the dead-letter topic
		// take for a delete. The marker goes after cimstream's headers, not among the original ones a
		// replay would re-produce.
		value = []byte{}
		headers = append(headers, stream.Header{Key: stream.HeaderValueMissing, Value: []byte("true")})
	}
	return stream.Output{Topic: b.Topic, Partition: stream.ByKey, Key: rec.Key, Value: value, Headers: headers, Time: now()}
}

// Shrink returns a smaller form of a dead letter the broker refused as too large, and false when it is
// already as small as it gets: first the value is dropped and only cimstream's own headers are kept;
// then the detail is cut short and the key dropped.
func Shrink(dl stream.Output, original stream.Record) (stream.Output, bool) {
	own := make([]stream.Header, 0, 8)
	for _, h := range dl.Headers {
		if ownHeaders[h.Key] {
			own = append(own, h)
		}
	}
	size := []stream.Header{
		{Key: HeaderOriginalSize, Value: []byte(strconv.Itoa(len(original.Value)))},
		{Key: HeaderTruncated, Value: []byte("value,headers")},
	}
	switch {
	case len(dl.Value) > 0 || len(own) < len(dl.Headers)-2:
		dl.Value = []byte{}
		dl.Headers = append(own, size...)
		return dl, true
	case len(dl.Key) > 0 || detailLen(dl.Headers) > shortDetail:
		for i, h := range own {
			if h.Key == HeaderDetail && len(h.Value) > shortDetail {
				own[i].Value = append(h.Value[:shortDetail-3:shortDetail-3], "..."...)
			}
		}
		dl.Key = nil
		dl.Headers = append(own, size...)
		return dl, true
	}
	return dl, false
}

// ownHeaders are the headers a shrunk dead letter keeps.
var ownHeaders = map[string]bool{HeaderCodes: true, HeaderDetail: true, HeaderPipeline: true, HeaderOriginalTime: true,
	stream.HeaderSourceTopic: true, stream.HeaderSourcePartition: true, stream.HeaderSourceOffset: true}

func detailLen(hs []stream.Header) int {
	for _, h := range hs {
		if h.Key == HeaderDetail {
			return len(h.Value)
		}
	}
	return 0
}

// SourceHeaders name rec's topic, partition and offset.
func SourceHeaders(rec stream.Record) []stream.Header {
	return []stream.Header{
		{Key: stream.HeaderSourceTopic, Value: []byte(rec.Topic)},
		{Key: stream.HeaderSourcePartition, Value: []byte(strconv.Itoa(rec.Partition))},
		{Key: stream.HeaderSourceOffset, Value: []byte(strconv.FormatInt(rec.Offset, 10))},
	}
}
