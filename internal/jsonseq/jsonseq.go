// Package jsonseq reads a stream of JSON values as people and tools write them: one value per line
// (NDJSON), values one after another (`jq .` output, pretty-printed objects, Python's indent=0), or a
// top-level array whose elements are the values. Each value comes with the 1-based line it starts on; a
// byte order mark at the start of the stream is skipped.
//
// The reader checks each value's syntax as it reads (RFC 8259), so a value that parses is never split,
// however it is laid out, and a value that does not is reported (Value.Err) with the line it broke on.
// Only then does the layout count, to find where the next value starts:
//   - a line, after the broken value's first, that starts with { or [ in column 0 (at or left of the
//     element's own column, or with ], in a top-level array); right after a one-line value, a line that
//     starts with { or [ in any column (a truncated NDJSON line, then the next message). Bytes read past
//     that line are read again as the next value. In a value laid out flat (lines in column 0 that start
//     with neither bracket, as indent=0 writes), nested values start in column 0 as well, so only the line
//     where the value broke counts, or a value that closed just before the array's end or the input's;
//   - otherwise the end of the broken value: its brackets balanced, a string ending at the latest at the
//     end of its line (a JSON string cannot hold a raw line break).
//
// Memory is bounded by the largest value kept (MaxBytes), not by the stream; a broken value longer than
// that cannot be read again from an earlier line, and reading resumes at the line where it broke or at its
// end.
package jsonseq

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Value is one JSON value of the stream, or one element of a top-level array.
type Value struct {
	// Line is the 1-based line the value starts on.
	Line int
	// Data is the value's text; for a malformed value, the text skipped. At most MaxBytes+1 bytes are kept.
	Data []byte
	// Size is the value's full length in bytes, which may exceed len(Data).
	Size int
	// Err is set when the value is malformed: not valid JSON, truncated, or not JSON at all.
	Err error
}

// ErrMalformed is wrapped by Value.Err.
var ErrMalformed = errors.New("not valid JSON")

// Reader yields the values of a stream.
type Reader struct {
	r        *bufio.Reader
	pending  []byte // bytes given back after a broken value, read before r
	maxBytes int
	started  bool // the byte order mark was looked for
	line     int  // line of the next byte to read
	col      int  // column of the next byte (0 at the start of a line)
	indent   bool // only spaces so far on the current line: the next non-space byte starts the line's text
	inArray  bool // between the elements of a top-level array
	arrayAt  int  // line the top-level array started on
}

// NewReader reads r; a value longer than maxBytes is kept only up to maxBytes+1 bytes (0: no bound).
func NewReader(r io.Reader, maxBytes int) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10), maxBytes: maxBytes, line: 1, indent: true}
}

func (r *Reader) peek() (byte, error) {
	if len(r.pending) > 0 {
		return r.pending[0], nil
	}
	p, err := r.r.Peek(1)
	if err != nil {
		return 0, err
	}
	return p[0], nil
}

// next consumes the byte peek returned.
func (r *Reader) next() byte {
	var b byte
	if len(r.pending) > 0 {
		b, r.pending = r.pending[0], r.pending[1:]
	} else {
		b, _ = r.r.ReadByte()
	}
	if b == '\n' {
		r.line++
		r.col = 0
		r.indent = true
	} else {
		r.col++
		if !isSpace(b) {
			r.indent = false
		}
	}
	return b
}

// unread gives back bytes to be read again, the first of them at line and col.
func (r *Reader) unread(b []byte, line, col int) {
	r.pending = append(append([]byte{}, b...), r.pending...)
	r.line, r.col, r.indent = line, col, true
}

var bom = []byte{0xEF, 0xBB, 0xBF}

// skipBOM drops a UTF-8 byte order mark at the start of the stream (Windows editors write one); it is no
// part of the first value, and the value after it is still in column 0.
func (r *Reader) skipBOM() error {
	r.started = true
	p, err := r.r.Peek(len(bom))
	if err != nil && err != io.EOF {
		return err
	}
	if string(p) == string(bom) {
		_, _ = r.r.Discard(len(bom))
	}
	return nil
}

// spaces are JSON's white space (RFC 8259).
const spaces = " \t\r\n"

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\r' || b == '\n' }

// Next returns the next value; io.EOF at the end of the stream. Other errors are the underlying reader's.
func (r *Reader) Next() (Value, error) {
	if !r.started {
		if err := r.skipBOM(); err != nil {
			return Value{}, err
		}
	}
	for {
		b, err := r.peek()
		if err == io.EOF && r.inArray {
			r.inArray = false
			return Value{Line: r.arrayAt, Err: fmt.Errorf("%w: the array that starts on line %d is not closed", ErrMalformed, r.arrayAt)}, nil
		}
		if err != nil {
			return Value{}, err
		}
		if isSpace(b) {
			r.next()
			continue
		}
		if r.inArray {
			switch b {
			case ',':
				r.next()
				continue
			case ']':
				r.next()
				r.inArray = false
				continue
			}
			return r.value(true)
		}
		switch b {
		case '[':
			// A top-level array: its elements are the values.
			r.next()
			r.inArray, r.arrayAt = true, r.line
			continue
		case '{':
			return r.value(false)
		}
		return r.garbage()
	}
}

// garbage reports the rest of the line as one malformed value; reading resumes on the next line.
func (r *Reader) garbage() (Value, error) {
	v := Value{Line: r.line}
	for {
		b, err := r.peek()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Value{}, err
		}
		if r.next() == '\n' {
			break
		}
		v.add(b, r.maxBytes)
	}
	v.Err = fmt.Errorf("%w: a message must start with { (or be an element of a [...] array)", ErrMalformed)
	return v, nil
}

func (v *Value) add(b byte, maxBytes int) {
	v.Size++
	if maxBytes <= 0 || len(v.Data) <= maxBytes {
		v.Data = append(v.Data, b)
	}
}

// restart is a place inside the value read so far where a new value may start, should this one prove broken.
type restart struct {
	at        int // offset in the value
	line, col int
	depth     int // the containers open before it
}

// value reads one value, a top-level one or an element of the top-level array, from the next byte on.
func (r *Reader) value(element bool) (Value, error) {
	v := Value{Line: r.line}
	startCol, leftmost := r.col, 0 // a restart is at or left of leftmost (see restartsHere)
	if element {
		leftmost = startCol
	}
	var (
		sc     scanner
		first  *restart  // the first restart point
		open   []restart // restart points of { or [ whose value is not closed yet, innermost last
		closed *restart  // the restart point whose value closed last, with only spaces and closers since
		flat   bool      // the value has lines at the restart column that start with neither bracket
	)
	for {
		b, err := r.peek()
		if err == io.EOF {
			if sc.complete() {
				return v, nil
			}
			to := first
			if flat {
				to = closed
			}
			return r.broken(v, to, fmt.Sprintf("the input ends inside the value that starts on line %d", v.Line), 0, false, element, startCol, true)
		}
		if err != nil {
			return Value{}, err
		}
		var here *restart
		if r.indent && !isSpace(b) && r.line > v.Line {
			switch {
			case r.restartsHere(b, v.Line, element, startCol):
				here = &restart{at: v.Size, line: r.line, col: r.col, depth: sc.depth()}
				if first == nil {
					first = here
				}
				if b != ']' {
					open = append(open, *here)
				}
			case r.col <= leftmost && b != '}' && b != ']':
				flat = true
			}
		}
		depth := sc.depth()
		switch res, what := sc.step(b); res {
		case scanEnded:
			return v, nil
		case scanError:
			why := fmt.Sprintf("line %d: %s, found %s", r.line, what, describe(b))
			if b == '\n' && sc.inString() {
				why = fmt.Sprintf("line %d ends inside a string", r.line)
			}
			// Where the next value starts. Laid out as NDJSON or `jq .`, nested values are indented, so
			// the first restart point is where the broken value was cut. Laid out flat (indent=0), nested
			// values start in column 0 too: the restart point is the line where the value broke, unless
			// a value closed just before (only spaces and closers between) and the array's ] (or the
			// input's end) broke it: then that value was the next one, read as part of the broken one.
			to := first
			if flat {
				to = here
				if to == nil || b == ']' && closed != nil {
					to = closed
				}
			}
			return r.broken(v, to, why, sc.depth(), sc.inString(), element, startCol, false)
		case scanDone:
			v.add(r.next(), r.maxBytes)
			return v, nil
		}
		v.add(r.next(), r.maxBytes)
		if !isSpace(b) && b != '}' && b != ']' {
			closed = nil
		}
		for sc.depth() < depth && len(open) > 0 && open[len(open)-1].depth >= sc.depth() {
			c := open[len(open)-1]
			closed, open = &c, open[:len(open)-1]
		}
	}
}

// restartsHere says whether b, the next byte, may start a new value while the value that started on line
// start is open (see the package documentation).
func (r *Reader) restartsHere(b byte, start int, element bool, startCol int) bool {
	if !r.indent || isSpace(b) || r.line == start {
		return false
	}
	if element {
		return (b == '{' || b == '[' || b == ']') && r.col <= startCol
	}
	return (b == '{' || b == '[') && (r.col == 0 || r.line == start+1)
}

// broken ends a value found broken (why says how) with the reader before the offending byte: at the first
// place a new value may start when there is one and its bytes are still held, else at the value's end.
func (r *Reader) broken(v Value, first *restart, why string, depth int, inString, element bool, startCol int, eof bool) (Value, error) {
	if first != nil && (first.at == v.Size || len(v.Data) == v.Size) {
		if first.at < len(v.Data) {
			r.unread(v.Data[first.at:], first.line, first.col)
			v.Data = v.Data[:first.at]
		}
		complete := len(v.Data) == first.at
		v.Size = first.at
		trimmed := bytes.TrimRight(v.Data, spaces)
		if complete {
			v.Size -= len(v.Data) - len(trimmed)
		}
		v.Data = trimmed
		v.Err = fmt.Errorf("%w: the value that starts on line %d is not closed before line %d", ErrMalformed, v.Line, first.line)
		return v, nil
	}
	v.Err = fmt.Errorf("%w: %s", ErrMalformed, why)
	if eof {
		// The element's finding says the input ends inside it; the array's would say it again.
		r.inArray = r.inArray && !element
		return v, nil
	}
	return r.skip(v, depth, inString, element, startCol)
}

// skip reads on to the end of a broken value: its brackets balanced (whatever their kind), a string ending
// at the latest at the end of its line, and never into a line where a new value may start.
func (r *Reader) skip(v Value, depth int, inString, element bool, startCol int) (Value, error) {
	escape := false
	scalar := depth == 0 && !inString
	for {
		b, err := r.peek()
		if err == io.EOF {
			r.inArray = r.inArray && !element
			return v, nil
		}
		if err != nil {
			return Value{}, err
		}
		if r.restartsHere(b, v.Line, element, startCol) {
			trimmed := bytes.TrimRight(v.Data, spaces)
			if len(v.Data) == v.Size {
				v.Size = len(trimmed)
			}
			v.Data = trimmed
			return v, nil
		}
		if scalar && (isSpace(b) || b == ',' || b == ']') {
			return v, nil
		}
		v.add(r.next(), r.maxBytes)
		if inString {
			switch {
			case escape:
				escape = false
			case b == '\\':
				escape = true
			case b == '"' || b == '\n':
				inString = false
				if depth <= 0 {
					return v, nil
				}
			}
			continue
		}
		switch b {
		case '"':
			inString = true
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth <= 0 {
				return v, nil
			}
		}
	}
}

// describe names a byte for an error message.
func describe(b byte) string {
	switch {
	case b == '\n':
		return "the end of the line"
	case b >= 0x20 && b < 0x7f:
		return fmt.Sprintf("%q", string(b))
	}
	return fmt.Sprintf("byte 0x%02x", b)
}
