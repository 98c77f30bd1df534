package cim

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Edit sets the value at Path (a chain of object keys, e.g. "header", "conversationId") to Value, which
// must be valid JSON. A member that exists keeps its place and only its value changes; an absent member is
// added at the end of its parent object. Everything else is copied unchanged.
type Edit struct {
	Path  []string
	Value []byte
}

// Set is a convenience constructor for an Edit.
func Set(value []byte, path ...string) Edit { return Edit{Path: path, Value: value} }

type splice struct {
	at, end int32 // replace raw[at:end]
	parent  int32 // for insertions, the parent object (to place commas)
	insert  bool
	key     string
	value   []byte
	order   int
}

// AppendEncoded appends the message with the edits applied to dst. Edits must not overlap (one edit's
// path a prefix of another's), and the parent of each path must be an object in the message.
func (m *Message) AppendEncoded(dst []byte, edits ...Edit) ([]byte, error) {
	if len(edits) == 0 {
		return append(dst, m.raw...), nil
	}
	var room [4]splice // the inbound pipeline makes up to four edits: no allocation for them
	splices := room[:0]
	for i, e := range edits {
		if len(e.Path) == 0 {
			return dst, fmt.Errorf("cim: edit %d has an empty path", i)
		}
		parent := m.rootRef().path(e.Path[:len(e.Path)-1]...)
		if !parent.is(kindObject) {
			return dst, fmt.Errorf("cim: edit of %s: the parent is not an object", joinPath(e.Path))
		}
		key := e.Path[len(e.Path)-1]
		if member := parent.get(key); member.ok() {
			n := member.n()
			splices = append(splices, splice{at: n.start, end: n.end, value: e.Value, order: i})
		} else {
			at := parent.n().end - 1 // before the closing brace
			splices = append(splices, splice{at: at, end: at, parent: parent.idx, insert: true, key: key, value: e.Value, order: i})
		}
	}
	slices.SortStableFunc(splices, func(a, b splice) int { return cmp.Compare(a.at, b.at) })
	for i := 1; i < len(splices); i++ {
		if splices[i].at < splices[i-1].end {
			return dst, fmt.Errorf("cim: overlapping edits")
		}
	}
	var insertedRoom [4]int32
	inserted := insertedRoom[:0] // parents that received an insertion already (a handful at most)
	pos := int32(0)
	for _, s := range splices {
		dst = append(dst, m.raw[pos:s.at]...)
		if s.insert {
			if m.nodes[s.parent].first >= 0 || slices.Contains(inserted, s.parent) {
				dst = append(dst, ',')
			}
			inserted = append(inserted, s.parent)
			dst = AppendString(dst, s.key)
			dst = append(dst, ':')
		}
		dst = append(dst, s.value...)
		pos = s.end
	}
	return append(dst, m.raw[pos:]...), nil
}

// Encode returns the message with the edits applied.
func (m *Message) Encode(edits ...Edit) ([]byte, error) {
	return m.AppendEncoded(make([]byte, 0, encodedSize(m, edits)), edits...)
}

// encodedSize bounds the encoded length for the usual edits (keys without escapes), so that Encode
// allocates once: a fixed allowance per edit made it grow twice for a customer object.
func encodedSize(m *Message, edits []Edit) int {
	n := len(m.raw)
	for _, e := range edits {
		n += len(e.Value) + 4 // a comma, two quotes and a colon when the member is inserted
		if len(e.Path) > 0 {
			n += len(e.Path[len(e.Path)-1])
		}
	}
	return n
}

// AppendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD; <, > and & are left as they are.
func AppendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = slices.Grow(dst, len(s)+2) // one allocation for strings without escapes, not one per doubling
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// StringValue returns s as JSON, for an Edit.
func StringValue(s string) []byte { return AppendString(nil, s) }

// IntValue returns n as JSON, for an Edit.
func IntValue(n int64) []byte { return strconv.AppendInt(nil, n, 10) }

func joinPath(p []string) string {
	out := ""
	for i, k := range p {
		if i > 0 {
			out += "."
		}
		out += k
	}
	return out
}
