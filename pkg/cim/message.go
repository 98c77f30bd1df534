// Package cim is the CIM (Customer Interaction Model) message of contact-center platforms such as
// Expertflow CX: a JSON object {id, header, body} with a typed body. It decodes, validates and edits
// messages without losing anything the producer sent: unknown fields, their order and their formatting
// survive decode → edit → encode byte for byte, except where an edit changes a value.
//
// The package has no Kafka, logging or global state; a connector author can import it alone.
package cim

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Default limits applied by Decode and Validate.
const (
	DefaultMaxBytes = 1 << 20 // 1 MiB
	DefaultMaxDepth = 64
	// DefaultMaxIDBytes bounds each identifying string (ids, session and conversation ids, channel
	// and customer identifiers): the session state keeps them, so an unbounded one is unbounded state.
	DefaultMaxIDBytes = 1 << 10
)

// Limits bound what Decode accepts (MaxBytes, MaxDepth) and how long Validate lets an identifying
// string be (MaxIDBytes, in bytes of the unescaped UTF-8 string); zero fields take the defaults. A
// Message remembers the limits it was decoded with, so Validate applies the same ones.
type Limits struct {
	MaxBytes   int
	MaxDepth   int
	MaxIDBytes int
}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxIDBytes <= 0 {
		l.MaxIDBytes = DefaultMaxIDBytes
	}
	return l
}

// Message is a decoded CIM message. It keeps the original bytes; accessors read from them.
// A Message is not safe for concurrent mutation.
type Message struct {
	raw   []byte
	nodes []node
	root  int32
	// fields and indexed: the node index of each member read on every message (see field).
	fields  fieldIndex
	indexed bool
	// limits are those it was decoded with, defaults applied: Validate's MaxIDBytes, and MaxDepth for
	// the values Edited parses.
	limits Limits
}

// DecodeError says why bytes are not a CIM message at all; Violation carries the code
// (malformed, too_large or too_deep) and a sentence.
type DecodeError struct {
	Violation Violation
}

func (e *DecodeError) Error() string { return e.Violation.Code + ": " + e.Violation.Message }

// ViolationOf is the violation a decode error stands for: its DecodeError's (found through any
// wrapping), or a malformed one with the error's text for any other error.
func ViolationOf(err error) Violation {
	var de *DecodeError
	if errors.As(err, &de) {
		return de.Violation
	}
	return Violation{Code: CodeMalformed, Message: err.Error()}
}

// DecodeAndValidate decodes data within limits and validates it for dir: the message (nil when data is
// no message at all) and every violation, none when valid.
func DecodeAndValidate(data []byte, limits Limits, dir Direction) (*Message, Violations) {
	m, err := DecodeLimits(data, limits)
	if err != nil {
		return nil, Violations{ViolationOf(err)}
	}
	return m, Validate(m, dir)
}

// Decode parses data with the default limits (1 MiB, 64 levels).
func Decode(data []byte) (*Message, error) { return DecodeLimits(data, Limits{}) }

// DecodeLimits parses data as a JSON object. It does not check CIM rules: see Validate. The Message
// refers to data, which must not be modified while the Message is in use.
func DecodeLimits(data []byte, limits Limits) (*Message, error) {
	limits = limits.withDefaults()
	if len(data) > limits.MaxBytes {
		return nil, &DecodeError{Violation{Code: CodeTooLarge,
			Message: "the message is " + strconv.Itoa(len(data)) + " bytes; the limit is " + strconv.Itoa(limits.MaxBytes)}}
	}
	p := parser{data: data, maxDepth: limits.MaxDepth, nodes: make([]node, 0, estimateNodes(len(data)))}
	root, err := p.parse()
	if err != nil {
		var de *depthError
		if errors.As(err, &de) {
			return nil, &DecodeError{Violation{Code: CodeTooDeep, Message: "JSON " + err.Error()}}
		}
		return nil, &DecodeError{Violation{Code: CodeMalformed, Message: "not valid JSON: " + err.Error()}}
	}
	if p.nodes[root].kind != kindObject {
		return nil, &DecodeError{Violation{Code: CodeMalformed,
			Message: "the message must be a JSON object, not " + articled(p.nodes[root].kind)}}
	}
	m := &Message{raw: data, nodes: p.nodes, root: root, limits: limits}
	m.index()
	return m, nil
}

// estimateNodes sizes the node slice so that typical messages need a single allocation: the benchmark
// messages have one node per 21-28 bytes; one per 16 leaves room without allocating twice what they use.
func estimateNodes(n int) int { return min(max(16, n/16), 4096) }

func articled(k kind) string {
	if k == kindArray || k == kindObject {
		return "an " + k.String()
	}
	return "a " + k.String()
}

// Raw returns the bytes the message was decoded from.
func (m *Message) Raw() []byte { return m.raw }

// ref is a handle to one value in a message; the zero ref (idx < 0) stands for "absent".
type ref struct {
	m   *Message
	idx int32
}

func (m *Message) rootRef() ref { return ref{m, m.root} }

func (r ref) ok() bool   { return r.idx >= 0 && r.m != nil }
func (r ref) n() *node   { return &r.m.nodes[r.idx] }
func (r ref) kind() kind { return r.n().kind }

// present is true for a value that exists and is not null: optional fields accept null as absent.
func (r ref) present() bool { return r.ok() && r.kind() != kindNull }

func (r ref) is(k kind) bool { return r.ok() && r.kind() == k }

// get returns the member named key of an object (the last one when a key repeats, as Jackson reads it).
// The members read on every message come from the index built at decode; others are looked for.
func (r ref) get(key string) ref {
	if !r.is(kindObject) {
		return ref{r.m, -1}
	}
	if o, ok := r.m.indexedObject(r.idx); ok && len(key) <= maxFieldKey { // a longer key is never a field
		if f, ok := memberField(o, []byte(key)); ok {
			return r.m.field(f)
		}
	}
	return r.scan(key)
}

// scan walks the members of an object for key.
func (r ref) scan(key string) ref {
	out := ref{r.m, -1}
	for c := r.n().first; c >= 0; c = r.m.nodes[c].next {
		cn := &r.m.nodes[c]
		if cn.keyEscaped {
			if unescape(r.m.raw[cn.keyStart:cn.keyEnd]) == key {
				out.idx = c
			}
		} else if string(r.m.raw[cn.keyStart:cn.keyEnd]) == key {
			out.idx = c
		}
	}
	return out
}

// path follows keys from r.
func (r ref) path(keys ...string) ref {
	for _, k := range keys {
		r = r.get(k)
	}
	return r
}

// items calls f for each element of an array with its index.
func (r ref) items(f func(i int, item ref)) {
	if !r.is(kindArray) {
		return
	}
	i := 0
	for c := r.n().first; c >= 0; c = r.m.nodes[c].next {
		f(i, ref{r.m, c})
		i++
	}
}

func (r ref) length() int {
	n := 0
	r.items(func(int, ref) { n++ })
	return n
}

// bytes returns the raw JSON of the value.
func (r ref) bytes() []byte { return r.m.raw[r.n().start:r.n().end] }

// strBytes returns a string value's content without quotes; escapes are kept as written.
func (r ref) strBytes() []byte {
	n := r.n()
	return r.m.raw[n.start+1 : n.end-1]
}

// str returns a string value, unescaped; "" for anything else.
func (r ref) str() string {
	if !r.is(kindString) {
		return ""
	}
	if r.n().escaped {
		return unescape(r.strBytes())
	}
	if s, ok := r.enumerated(); ok {
		return s
	}
	return string(r.strBytes())
}

// enumerated returns the constant equal to the value of an enumerated field (body.type, header.sender.type,
// header.intent), which spares an allocation: those are read several times per message.
func (r ref) enumerated() (string, bool) {
	var values []string
	switch {
	case !r.m.indexed:
		return "", false
	case r.idx == r.m.fields[fBodyType]:
		values = BodyTypes
	case r.idx == r.m.fields[fSenderType]:
		values = SenderTypes
	case r.idx == r.m.fields[fIntent]:
		values = KnownIntents
	}
	b := r.strBytes()
	for _, v := range values {
		if string(b) == v {
			return v, true
		}
	}
	return "", false
}

// The readers below unescape in place of use, not through a shared helper: a []byte returned from a
// helper escapes to the heap, a second allocation per escaped string (measured with AllocsPerRun).

// equals compares a string value with s.
func (r ref) equals(s string) bool {
	if !r.is(kindString) {
		return false
	}
	if r.n().escaped {
		return unescape(r.strBytes()) == s
	}
	return string(r.strBytes()) == s
}

// nonBlank is true for a string holding something other than white space (the ASCII set JSON Schema's
// \s and Go's \s share).
func (r ref) nonBlank() bool {
	if !r.is(kindString) {
		return false
	}
	b := r.strBytes()
	if r.n().escaped {
		b = []byte(unescape(b))
	}
	return len(bytes.Trim(b, " \t\n\r\f")) > 0
}

// number returns a number value as float64.
func (r ref) number() (float64, bool) {
	if !r.is(kindNumber) {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(r.bytes()), 64)
	return f, err == nil
}

// integer returns a number with no fractional part (1.0 counts, as in JSON Schema).
func (r ref) integer() (int64, bool) {
	if !r.is(kindNumber) {
		return 0, false
	}
	b := r.bytes()
	if !bytes.ContainsAny(b, ".eE") {
		n, err := strconv.ParseInt(string(b), 10, 64)
		return n, err == nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<62 {
		return 0, false
	}
	return int64(f), true
}

// digits returns the value of a string holding only ASCII digits (after unescaping); values beyond
// int64 saturate, so range checks still reject them.
func (r ref) digits() (int64, bool) {
	if !r.is(kindString) {
		return 0, false
	}
	b := r.strBytes()
	if r.n().escaped {
		b = []byte(unescape(b))
	}
	if len(b) == 0 {
		return 0, false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return math.MaxInt64, true
	}
	return n, true
}

// unescape decodes the escapes of a JSON string's content (already checked by the parser).
func unescape(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '\\' {
			sb.WriteByte(c)
			continue
		}
		i++
		switch b[i] {
		case 'b':
			sb.WriteByte('\b')
		case 'f':
			sb.WriteByte('\f')
		case 'n':
			sb.WriteByte('\n')
		case 'r':
			sb.WriteByte('\r')
		case 't':
			sb.WriteByte('\t')
		case 'u':
			r := hex4(b[i+1 : i+5])
			i += 4
			if utf16.IsSurrogate(r) && i+6 < len(b) && b[i+1] == '\\' && b[i+2] == 'u' {
				if r2 := hex4(b[i+3 : i+7]); utf16.DecodeRune(r, r2) != utf8.RuneError {
					r = utf16.DecodeRune(r, r2)
					i += 6
				}
			}
			sb.WriteRune(r) // a lone surrogate becomes U+FFFD, as in encoding/json
		default: // " \ /
			sb.WriteByte(b[i])
		}
	}
	return sb.String()
}

// hex4 is the rune of a \u escape's four hex digits (checked by the parser).
func hex4(b []byte) rune {
	v, _ := strconv.ParseUint(string(b), 16, 16)
	return rune(v)
}
