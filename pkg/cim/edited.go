package cim

import (
	"bytes"
	"errors"
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
	var room [4]move // the inbound pipeline makes up to four edits: no allocation for them
	moves, err := m.moves(room[:0], edits)
	if err != nil {
		return nil, err
	}
	raw := m.appendMoved(make([]byte, 0, encodedSize(m, edits)), moves)
	nodes := make([]node, len(m.nodes), len(m.nodes)+8*len(edits)) // one allocation: the edits' values are small
	copy(nodes, m.nodes)
	out := &Message{raw: raw, nodes: nodes, root: m.root, limits: m.limits}
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
	p := parser{data: m.raw, pos: int(v.valueAt), maxDepth: m.limits.MaxDepth, nodes: m.nodes}
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
