// Package jsonseq reads a stream of JSON values as people and tools write them: one value per line
// (NDJSON), values one after another (`jq .` output, pretty-printed objects), or a top-level array whose
// elements are the values. Each value comes with the 1-based line it starts on. A malformed value is
// reported, and reading resumes at the next line, so one bad line does not hide the good ones after it.
//
// The reader only finds value boundaries (brackets, strings, escapes); the caller parses each value, so
// a value with a syntax error inside balanced brackets is handed over for the caller's parser to report.
// Memory is bounded by the largest value kept (MaxBytes), not by the stream.
package jsonseq

import (
	"bufio"
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
	// Err is set when the value is malformed: truncated, or not JSON at all.
	Err error
}

// ErrMalformed is wrapped by Value.Err.
var ErrMalformed = errors.New("not valid JSON")

// Reader yields the values of a stream.
type Reader struct {
	r        *bufio.Reader
	maxBytes int
	line     int  // line of the next byte to read
	col      int  // column of the next byte (0 at the start of a line)
	inArray  bool // between the elements of a top-level array
	arrayAt  int  // line the top-level array started on
}

// NewReader reads r; a value longer than maxBytes is kept only up to maxBytes+1 bytes (0: no bound).
func NewReader(r io.Reader, maxBytes int) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10), maxBytes: maxBytes, line: 1}
}

func (r *Reader) readByte() (byte, error) {
	b, err := r.r.ReadByte()
	if err != nil {
		return 0, err
	}
	if b == '\n' {
		r.line++
		r.col = 0
	} else {
		r.col++
	}
	return b, nil
}

func (r *Reader) peek() (byte, bool) {
	p, err := r.r.Peek(1)
	if err != nil {
		return 0, false
	}
	return p[0], true
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\r' || b == '\n' }

// Next returns the next value; io.EOF at the end of the stream. Other errors are the underlying reader's.
func (r *Reader) Next() (Value, error) {
	for {
		b, err := r.readByte()
		if err == io.EOF && r.inArray {
			r.inArray = false
			return Value{Line: r.arrayAt, Err: fmt.Errorf("%w: the array that starts on line %d is not closed", ErrMalformed, r.arrayAt)}, nil
		}
		if err != nil {
			return Value{}, err
		}
		if isSpace(b) {
			continue
		}
		if r.inArray {
			switch b {
			case ',':
				continue
			case ']':
				r.inArray = false
				continue
			}
			return r.value(b, true)
		}
		switch b {
		case '[':
			// A top-level array: its elements are the values.
			r.inArray, r.arrayAt = true, r.line
			continue
		case '{':
			return r.value(b, false)
		}
		return r.garbage(b)
	}
}

// garbage reports the rest of the line as one malformed value; reading resumes on the next line.
func (r *Reader) garbage(first byte) (Value, error) {
	v := Value{Line: r.line}
	v.add(first, r.maxBytes)
	for {
		b, err := r.readByte()
		if err == io.EOF || b == '\n' {
			break
		}
		if err != nil {
			return Value{}, err
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

// value reads one value whose first byte is first. In an array, a scalar element ends at , ] or space.
func (r *Reader) value(first byte, element bool) (Value, error) {
	v := Value{Line: r.line}
	v.add(first, r.maxBytes)
	depth, inString, escape := 0, false, false
	switch first {
	case '{', '[':
		depth = 1
	case '"':
		inString = true
	}
	scalar := depth == 0 && !inString
	for depth > 0 || inString || scalar {
		if scalar {
			if b, ok := r.peek(); !ok || isSpace(b) || b == ',' || b == ']' {
				return v, nil
			}
		}
		b, err := r.readByte()
		if err == io.EOF {
			r.inArray = false
			v.Err = fmt.Errorf("%w: the input ends inside the value that starts on line %d", ErrMalformed, v.Line)
			return v, nil
		}
		if err != nil {
			return Value{}, err
		}
		if inString {
			switch {
			case escape:
				escape = false
			case b == '\\':
				escape = true
			case b == '"':
				inString = false
			case b == '\n':
				// A raw line break cannot be inside a JSON string: the value was cut at the end of a line.
				return r.malformed(v, r.line-1, fmt.Sprintf("line %d ends inside a string", r.line-1))
			}
			v.add(b, r.maxBytes)
			if !inString && depth == 0 {
				return v, nil
			}
			continue
		}
		v.add(b, r.maxBytes)
		switch b {
		case '"':
			inString = true
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		case '\n':
			// A value that starts a line at column 0 while this one is open: this one was cut short
			// (nested lines of pretty-printed JSON are indented).
			if next, ok := r.peek(); ok && (next == '{' || next == '[') && !element {
				trimmed := trimTrailingSpace(v.Data)
				v.Size -= len(v.Data) - len(trimmed)
				v.Data = trimmed
				v.Err = fmt.Errorf("%w: the value that starts on line %d is not closed before line %d", ErrMalformed, v.Line, r.line)
				return v, nil
			}
		}
	}
	return v, nil
}

// malformed ends a broken value found broken on errLine, with the reader at the start of the next line:
// a one-line value resumes reading there; a value over several lines skips on to the next line that
// starts with { or [ at column 0 (the rest of a broken pretty-printed value is no message of its own).
func (r *Reader) malformed(v Value, errLine int, why string) (Value, error) {
	v.Err = fmt.Errorf("%w: %s", ErrMalformed, why)
	r.inArray = false
	if errLine == v.Line {
		return v, nil
	}
	for {
		b, ok := r.peek()
		if !ok || b == '{' || b == '[' {
			return v, nil
		}
		if err := r.skipLine(); err != nil {
			return v, err
		}
	}
}

func (r *Reader) skipLine() error {
	for {
		b, err := r.readByte()
		if err == io.EOF || b == '\n' {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func trimTrailingSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}
