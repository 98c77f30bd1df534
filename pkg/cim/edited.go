package cim

import (
	"bytes"
	"cmp"
	"errors"
	"slices"
	"unicode/utf8"
)

// Edited returns the message with the edits applied, as Encode does, already decoded: the same Message
// Decode would give for the encoded bytes, without parsing them again (only the edits' values are
// parsed). It fails where Encode fails, and when an edit's value is not exactly one JSON value in UTF-8
// (Encode copies such a value as it is; decoding its output would then fail or differ).
func (m *Message) Edited(edits ...Edit) (*Message, error) {
	if len(edits) == 0 {
		return m, nil
	}
	raw, err := m.Encode(edits...)
	if err != nil {
		return nil, err
	}
	nodes := make([]node, len(m.nodes), len(m.nodes)+8*len(edits)) // one allocation: the edits' values are small
	copy(nodes, m.nodes)
	out := &Message{raw: raw, nodes: nodes, root: m.root, maxID: m.maxID, maxDepth: m.maxDepth}
	var room [4]move // the inbound pipeline makes up to four edits: no allocation for them
	moves := m.moves(room[:0], edits)
	for i := range out.nodes {
		n := &out.nodes[i]
		n.start, n.end = moves.shift(n.start), moves.shift(n.end-1)+1
		if n.keyEnd > 0 {
			n.keyStart, n.keyEnd = moves.shift(n.keyStart), moves.shift(n.keyEnd)
		}
	}
	for _, mv := range moves {
		if err := out.graft(mv); err != nil {
			return nil, err
		}
	}
	out.index()
	return out, nil
}

// move is one edit as it lands in the encoded bytes: raw[at:end] of the original became the member
// (insert) or value written at value in the new bytes, delta bytes longer.
type move struct {
	at, end int32
	delta   int32
	member  int32 // the node replaced, or the parent object of an insertion
	insert  bool
	key     string
	keyAt   int32 // new offset of the inserted key's opening quote
	keyLen  int32 // the inserted key's length as JSON, quotes included
	value   []byte
	valueAt int32
	depth   int // nesting of the member, as the parser counts it
}

type moves []move

// moves lays the edits out as AppendEncoded writes them (validated there already), appended to mv.
func (m *Message) moves(mv moves, edits []Edit) moves {
	for _, e := range edits {
		parent := m.rootRef().path(e.Path[:len(e.Path)-1]...)
		key := e.Path[len(e.Path)-1]
		if member := parent.get(key); member.ok() {
			n := member.n()
			mv = append(mv, move{at: n.start, end: n.end, member: member.idx, value: e.Value, depth: len(e.Path)})
			continue
		}
		at := parent.n().end - 1
		mv = append(mv, move{at: at, end: at, member: parent.idx, insert: true, key: key, value: e.Value, depth: len(e.Path)})
	}
	slices.SortStableFunc(mv, func(a, b move) int { return cmp.Compare(a.at, b.at) })
	var insertedRoom [4]int32
	inserted := insertedRoom[:0] // parents that received an insertion already
	var shift int32
	for i := range mv {
		v := &mv[i]
		pos := v.at + shift
		written := int32(len(v.value))
		if v.insert {
			comma := int32(0)
			if m.nodes[v.member].first >= 0 || slices.Contains(inserted, v.member) {
				comma = 1
			}
			inserted = append(inserted, v.member)
			v.keyAt = pos + comma
			v.keyLen = int32(quotedLen(v.key))
			written += comma + v.keyLen + 1
			v.valueAt = v.keyAt + v.keyLen + 1
		} else {
			v.valueAt = pos
		}
		v.delta = written - (v.end - v.at)
		shift += v.delta
	}
	return mv
}

// quotedLen is the length of key as AppendString writes it, without allocating for a usual key.
func quotedLen(key string) int {
	var room [64]byte
	return len(AppendString(room[:0], key))
}

// shift is the new offset of the original byte at i (outside the bytes an edit replaced).
func (mv moves) shift(i int32) int32 {
	d := int32(0)
	for _, v := range mv {
		if v.end <= i { // an insertion at i lands before the byte at i
			d += v.delta
		}
	}
	return i + d
}

var errEditValue = errors.New("cim: an edit's value is not one JSON value")

// graft parses an edit's value in the new bytes and hangs it in the tree: in place of the member it
// replaced (keeping its key and siblings), or as the last member of the object it was inserted in.
func (m *Message) graft(v move) error {
	if !utf8.Valid(v.value) {
		return errEditValue
	}
	p := parser{data: m.raw, pos: int(v.valueAt), maxDepth: m.depthLimit(), nodes: m.nodes}
	idx, err := p.value(v.depth)
	m.nodes = p.nodes
	if err != nil || p.pos != int(v.valueAt)+len(v.value) {
		return errEditValue
	}
	parsed := m.nodes[idx]
	if !v.insert {
		n := &m.nodes[v.member]
		n.kind, n.start, n.end, n.first, n.escaped = parsed.kind, parsed.start, parsed.end, parsed.first, parsed.escaped
		return nil
	}
	n := &m.nodes[idx]
	n.keyStart, n.keyEnd = v.keyAt+1, v.keyAt+v.keyLen-1
	n.keyEscaped = bytes.IndexByte(m.raw[n.keyStart:n.keyEnd], '\\') >= 0
	parent := &m.nodes[v.member]
	if parent.first < 0 {
		parent.first = idx
		return nil
	}
	last := parent.first
	for m.nodes[last].next >= 0 {
		last = m.nodes[last].next
	}
	m.nodes[last].next = idx
	return nil
}

func (m *Message) depthLimit() int {
	if m.maxDepth > 0 {
		return m.maxDepth
	}
	return DefaultMaxDepth
}
