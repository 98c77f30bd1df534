package cim

import (
	"fmt"
	"unicode/utf8"
)

// kind is the JSON type of a node.
type kind uint8

const (
	kindNull kind = iota
	kindBool
	kindNumber
	kindString
	kindObject
	kindArray
)

func (k kind) String() string {
	return [...]string{"null", "boolean", "number", "string", "object", "array"}[k]
}

// node is one JSON value inside Message.raw. Nodes refer to the original bytes by offset, so decoding
// copies nothing and encoding can reproduce every byte the producer sent, unknown fields included.
type node struct {
	start, end       int32 // the value's bytes: raw[start:end] (strings include their quotes)
	keyStart, keyEnd int32 // for object members, the key's bytes without quotes; otherwise 0, 0
	first, next      int32 // first child and next sibling, -1 when none
	kind             kind
	escaped          bool // the string value contains a backslash escape
	keyEscaped       bool // the key contains a backslash escape
}

// parser builds the node tree in one pass; it checks syntax, UTF-8 and nesting depth.
type parser struct {
	data     []byte
	pos      int
	nodes    []node
	maxDepth int
}

// syntaxError is a malformed input, with the byte offset for the dead-letter detail.
type syntaxError struct {
	offset int
	msg    string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("%s at byte %d", e.msg, e.offset) }

type depthError struct{ limit int }

func (e *depthError) Error() string { return fmt.Sprintf("nesting deeper than %d levels", e.limit) }

func (p *parser) fail(msg string) error { return &syntaxError{offset: p.pos, msg: msg} }

func (p *parser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// parse parses the whole input as one value and returns its node index.
func (p *parser) parse() (int32, error) {
	if !utf8.Valid(p.data) {
		return -1, &syntaxError{offset: invalidUTF8Offset(p.data), msg: "invalid UTF-8"}
	}
	p.skipSpace()
	root, err := p.value(0)
	if err != nil {
		return -1, err
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return -1, p.fail("unexpected data after the JSON value")
	}
	return root, nil
}

func invalidUTF8Offset(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return len(b)
}

func (p *parser) add(k kind, start int) int32 {
	p.nodes = append(p.nodes, node{kind: k, start: int32(start), first: -1, next: -1})
	return int32(len(p.nodes) - 1)
}

func (p *parser) value(depth int) (int32, error) {
	if p.pos >= len(p.data) {
		return -1, p.fail("unexpected end of input")
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object(depth + 1)
	case c == '[':
		return p.array(depth + 1)
	case c == '"':
		start := p.pos
		escaped, err := p.str()
		if err != nil {
			return -1, err
		}
		i := p.add(kindString, start)
		p.nodes[i].end, p.nodes[i].escaped = int32(p.pos), escaped
		return i, nil
	case c == '-' || (c >= '0' && c <= '9'):
		start := p.pos
		if err := p.number(); err != nil {
			return -1, err
		}
		i := p.add(kindNumber, start)
		p.nodes[i].end = int32(p.pos)
		return i, nil
	default:
		for _, lit := range [...]struct {
			text string
			k    kind
		}{{"true", kindBool}, {"false", kindBool}, {"null", kindNull}} {
			if len(p.data)-p.pos >= len(lit.text) && string(p.data[p.pos:p.pos+len(lit.text)]) == lit.text {
				i := p.add(lit.k, p.pos)
				p.pos += len(lit.text)
				p.nodes[i].end = int32(p.pos)
				return i, nil
			}
		}
		return -1, p.fail(fmt.Sprintf("unexpected character %q", c))
	}
}

func (p *parser) object(depth int) (int32, error) {
	if depth > p.maxDepth {
		return -1, &depthError{limit: p.maxDepth}
	}
	obj := p.add(kindObject, p.pos)
	p.pos++ // {
	p.skipSpace()
	last := int32(-1)
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		p.nodes[obj].end = int32(p.pos)
		return obj, nil
	}
	for {
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return -1, p.fail("expected a string key")
		}
		keyStart := p.pos + 1
		keyEscaped, err := p.str()
		if err != nil {
			return -1, err
		}
		keyEnd := p.pos - 1
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return -1, p.fail("expected ':' after a key")
		}
		p.pos++
		p.skipSpace()
		child, err := p.value(depth)
		if err != nil {
			return -1, err
		}
		n := &p.nodes[child]
		n.keyStart, n.keyEnd, n.keyEscaped = int32(keyStart), int32(keyEnd), keyEscaped
		if last < 0 {
			p.nodes[obj].first = child
		} else {
			p.nodes[last].next = child
		}
		last = child
		p.skipSpace()
		if p.pos >= len(p.data) {
			return -1, p.fail("unexpected end of input in an object")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case '}':
			p.pos++
			p.nodes[obj].end = int32(p.pos)
			return obj, nil
		default:
			return -1, p.fail("expected ',' or '}' in an object")
		}
	}
}

func (p *parser) array(depth int) (int32, error) {
	if depth > p.maxDepth {
		return -1, &depthError{limit: p.maxDepth}
	}
	arr := p.add(kindArray, p.pos)
	p.pos++ // [
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		p.nodes[arr].end = int32(p.pos)
		return arr, nil
	}
	last := int32(-1)
	for {
		p.skipSpace()
		child, err := p.value(depth)
		if err != nil {
			return -1, err
		}
		if last < 0 {
			p.nodes[arr].first = child
		} else {
			p.nodes[last].next = child
		}
		last = child
		p.skipSpace()
		if p.pos >= len(p.data) {
			return -1, p.fail("unexpected end of input in an array")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			p.nodes[arr].end = int32(p.pos)
			return arr, nil
		default:
			return -1, p.fail("expected ',' or ']' in an array")
		}
	}
}

// str scans a string starting at the opening quote and leaves pos after the closing quote.
func (p *parser) str() (escaped bool, err error) {
	p.pos++ // opening quote
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			return escaped, nil
		case c == '\\':
			escaped = true
			if p.pos+1 >= len(p.data) {
				return false, p.fail("unterminated escape")
			}
			switch p.data[p.pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.pos += 2
			case 'u':
				if p.pos+6 > len(p.data) || !isHex4(p.data[p.pos+2:p.pos+6]) {
					return false, p.fail(`invalid \u escape`)
				}
				p.pos += 6
			default:
				return false, p.fail("invalid escape")
			}
		case c < 0x20:
			return false, p.fail("control character in a string")
		default:
			p.pos++
		}
	}
	return false, p.fail("unterminated string")
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func (p *parser) number() error {
	d := p.data
	if d[p.pos] == '-' {
		p.pos++
	}
	switch {
	case p.pos < len(d) && d[p.pos] == '0':
		p.pos++
	case p.pos < len(d) && d[p.pos] >= '1' && d[p.pos] <= '9':
		for p.pos < len(d) && d[p.pos] >= '0' && d[p.pos] <= '9' {
			p.pos++
		}
	default:
		return p.fail("invalid number")
	}
	if p.pos < len(d) && d[p.pos] == '.' {
		p.pos++
		if !p.digits() {
			return p.fail("invalid number: digits expected after '.'")
		}
	}
	if p.pos < len(d) && (d[p.pos] == 'e' || d[p.pos] == 'E') {
		p.pos++
		if p.pos < len(d) && (d[p.pos] == '+' || d[p.pos] == '-') {
			p.pos++
		}
		if !p.digits() {
			return p.fail("invalid number: digits expected in the exponent")
		}
	}
	return nil
}

func (p *parser) digits() bool {
	start := p.pos
	for p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
		p.pos++
	}
	return p.pos > start
}
