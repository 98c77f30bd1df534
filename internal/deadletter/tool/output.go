package tool

import (
	"encoding/base64"
	"time"
	"unicode/utf8"

	"github.com/cimstream/cimstream/pkg/cim"
)

// LetterJSON is a dead letter as one JSON line: where it is, the original key, value and headers
// (text when valid UTF-8, else base64 in the *Base64 field), and what the pipeline said.
type LetterJSON struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	Offset    int64  `json:"offset"`
	Timestamp string `json:"timestamp,omitempty"` // when the dead letter was written
	// OriginalTimestamp is the original record's timestamp (the connector's to choose).
	OriginalTimestamp string       `json:"originalTimestamp,omitempty"`
	ID                string       `json:"id,omitempty"`
	Codes             []string     `json:"codes"`
	Detail            string       `json:"detail"`
	Pipeline          string       `json:"pipeline"`
	Source            SourceJSON   `json:"source"`
	ReplayCount       int          `json:"replayCount"`
	Replayed          *bool        `json:"replayed,omitempty"`
	Truncated         string       `json:"truncated,omitempty"`
	OriginalSize      int          `json:"originalSize,omitempty"`
	Key               *string      `json:"key"`
	KeyBase64         string       `json:"keyBase64,omitempty"`
	Value             *string      `json:"value"`
	ValueBase64       string       `json:"valueBase64,omitempty"`
	Headers           []HeaderJSON `json:"headers"`
}

// SourceJSON is the record that was dead-lettered.
type SourceJSON struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	Offset    int64  `json:"offset"`
}

// HeaderJSON is one of the original record's headers.
type HeaderJSON struct {
	Key         string  `json:"key"`
	Value       *string `json:"value"`
	ValueBase64 string  `json:"valueBase64,omitempty"`
}

// DecisionJSON is one line of a replay's listing.
type DecisionJSON struct {
	Outcome    string         `json:"outcome"`
	Target     string         `json:"target,omitempty"`
	Reason     string         `json:"reason,omitempty"`
	Violations cim.Violations `json:"violations,omitempty"`
	DeadLetter LetterJSON     `json:"deadLetter"`
}

// JSON renders l; replayed is set only when known.
func (l Letter) JSON(replayed *bool) LetterJSON {
	j := LetterJSON{Topic: l.Record.Topic, Partition: l.Record.Partition, Offset: l.Record.Offset, ID: l.MessageID,
		Codes: l.Codes, Detail: l.Detail, Pipeline: l.Pipeline, ReplayCount: l.ReplayCount, Replayed: replayed,
		Truncated: l.Truncated, OriginalSize: l.OriginalSize, Headers: make([]HeaderJSON, 0, len(l.Original)),
		Source: SourceJSON{Topic: l.SourceTopic, Partition: l.SourcePartition, Offset: l.SourceOffset}}
	if j.Codes == nil {
		j.Codes = []string{}
	}
	if !l.Record.Time.IsZero() {
		j.Timestamp = l.Record.Time.UTC().Format(time.RFC3339Nano)
	}
	if !l.OriginalTime.IsZero() {
		j.OriginalTimestamp = l.OriginalTime.UTC().Format(time.RFC3339Nano)
	}
	j.Key, j.KeyBase64 = text(l.Record.Key)
	j.Value, j.ValueBase64 = text(l.Record.Value)
	for _, h := range l.Original {
		v, b := text(h.Value)
		j.Headers = append(j.Headers, HeaderJSON{Key: h.Key, Value: v, ValueBase64: b})
	}
	return j
}

// JSON renders d.
func (d Decision) JSON() DecisionJSON {
	return DecisionJSON{Outcome: d.Outcome, Target: d.Target, Reason: d.Reason, Violations: d.Violations, DeadLetter: d.Letter.JSON(nil)}
}

// text is b as a string when it is valid UTF-8, else nil and its base64; nil bytes are null.
func text(b []byte) (*string, string) {
	if b == nil {
		return nil, ""
	}
	if utf8.Valid(b) {
		s := string(b)
		return &s, ""
	}
	return nil, base64.StdEncoding.EncodeToString(b)
}
