package cim

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
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

// AppendEncoded appends the message with the edits applied to dst. Edits must not overlap (one edit's
// path a prefix of another's), and the parent of each path must be an object in the message.
func (m *Message) AppendEncoded(dst []byte, edits ...Edit) ([]byte, error) {
	if len(edits) == 0 {
		return append(dst, m.raw...), nil
	}
	var room [4]move // the inbound pipeline makes up to four edits: no allocation for them
	mv, err := m.moves(room[:0], edits)
	if err != nil {
		return dst, err
	}
	return m.appendMoved(dst, mv), nil
}

// move is one edit as it lands in the encoded bytes: raw[at:end] of the original became the member
// (insert) or value written at value in the new bytes, delta bytes longer.
type move struct {
	at, end int32
	delta   int32
	member  int32 // the node replaced, or the parent object of an insertion
	insert  bool
	comma   bool // a comma goes before the inserted member
	key     string
	keyAt   int32 // new offset of the inserted key's opening quote
	keyLen  int32 // the inserted key's length as JSON, quotes included
	value   []byte
	valueAt int32
	depth   int // nesting of the member, as the parser counts it
}

type moves []move

// moves checks the edits and lays them out in the order they land in the encoded bytes, appended to mv.
func (m *Message) moves(mv moves, edits []Edit) (moves, error) {
	for i, e := range edits {
		if len(e.Path) == 0 {
			return nil, fmt.Errorf("cim: edit %d has an empty path", i)
		}
		parent := m.rootRef().path(e.Path[:len(e.Path)-1]...)
		if !parent.is(kindObject) {
			return nil, fmt.Errorf("cim: edit of %s: the parent is not an object", strings.Join(e.Path, "."))
		}
		key := e.Path[len(e.Path)-1]
		if member := parent.get(key); member.ok() {
			n := member.n()
			mv = append(mv, move{at: n.start, end: n.end, member: member.idx, value: e.Value, depth: len(e.Path)})
			continue
		}
		at := parent.n().end - 1 // before the closing brace
		mv = append(mv, move{at: at, end: at, member: parent.idx, insert: true, key: key, value: e.Value, depth: len(e.Path)})
	}
	slices.SortStableFunc(mv, func(a, b move) int { return cmp.Compare(a.at, b.at) })
	for i := 1; i < len(mv); i++ {
		if mv[i].at < mv[i-1].end {
			return nil, fmt.Errorf("cim: overlapping edits")
		}
	}
	var insertedRoom [4]int32
	inserted := insertedRoom[:0] // parents that received an insertion already (a handful at most)
	var shift int32
	for i := range mv {
		v := &mv[i]
		pos := v.at + shift
		v.valueAt = pos
		if v.insert {
			v.comma = m.nodes[v.member].first >= 0 || slices.Contains(inserted, v.member)
			inserted = append(inserted, v.member)
			v.keyAt = pos
			if v.comma {
				v.keyAt++
			}
			v.keyLen = int32(quotedLen(v.key))
			v.valueAt = v.keyAt + v.keyLen + 1
		}
		v.delta = v.valueAt + int32(len(v.value)) - pos - (v.end - v.at)
		shift += v.delta
	}
	return mv, nil
}

// quotedLen is the length of key as AppendString writes it, without allocating for a usual key.
func quotedLen(key string) int {
	var room [64]byte
	return len(AppendString(room[:0], key))
}

// appendMoved appends the message's bytes with the moves made to dst.
func (m *Message) appendMoved(dst []byte, mv moves) []byte {
	pos := int32(0)
	for _, v := range mv {
		dst = append(dst, m.raw[pos:v.at]...)
		if v.insert {
			if v.comma {
				dst = append(dst, ',')
			}
			dst = AppendString(dst, v.key)
			dst = append(dst, ':')
		}
		dst = append(dst, v.value...)
		pos = v.end
	}
	return append(dst, m.raw[pos:]...)
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
