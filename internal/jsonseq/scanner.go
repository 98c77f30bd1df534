package jsonseq

// scanner checks the syntax of one JSON value (RFC 8259) a byte at a time, so the reader knows where a
// value ends without guessing from the layout, and where it breaks.
type scanner struct {
	stack []byte // open containers, '{' or '['
	state scanState
	key   bool   // the string being read is an object key
	rest  string // the letters still due in true, false or null
	hex   int    // hex digits read of a \u escape
}

type scanState int

const (
	stValue      scanState = iota // a value must come: at the start, after : or after , in an array
	stValueOrEnd                  // after [: a value or ]
	stKeyOrEnd                    // after {: a key or }
	stKey                         // after , in an object: a key
	stColon                       // after a key
	stAfter                       // after a value in a container: , or the container's end
	stString
	stEscape
	stUnicode
	stMinus // after a leading -
	stZero  // after a leading 0
	stInt
	stDot
	stFrac
	stE
	stESign
	stExp
	stLiteral
	stDone
)

type scanResult int

const (
	scanContinue scanResult = iota // the byte belongs to the value, which goes on
	scanDone                       // the byte ends the value
	scanEnded                      // the value (a number) ended before the byte, which is not part of it
	scanError                      // the byte cannot come here
)

// maxNesting bounds the containers tracked, so a stream of [ cannot grow the stack without bound.
const maxNesting = 10000

// step takes the next byte; for scanError, what says what was expected.
func (s *scanner) step(b byte) (res scanResult, what string) {
	switch s.state {
	case stValue, stValueOrEnd:
		if isSpace(b) {
			return scanContinue, ""
		}
		if b == ']' && s.state == stValueOrEnd {
			return s.close()
		}
		return s.begin(b)
	case stKeyOrEnd, stKey:
		switch {
		case isSpace(b):
			return scanContinue, ""
		case b == '"':
			s.state, s.key = stString, true
			return scanContinue, ""
		case b == '}' && s.state == stKeyOrEnd:
			return s.close()
		}
		return scanError, "expected a key in double quotes"
	case stColon:
		switch {
		case isSpace(b):
			return scanContinue, ""
		case b == ':':
			s.state = stValue
			return scanContinue, ""
		}
		return scanError, "expected : after the key"
	case stAfter:
		top := s.stack[len(s.stack)-1]
		switch {
		case isSpace(b):
			return scanContinue, ""
		case b == ',' && top == '{':
			s.state = stKey
			return scanContinue, ""
		case b == ',':
			s.state = stValue
			return scanContinue, ""
		case b == '}' && top == '{', b == ']' && top == '[':
			return s.close()
		case top == '{':
			return scanError, "expected , or } after an object member"
		}
		return scanError, "expected , or ] after an array element"
	case stString:
		switch {
		case b == '"' && s.key:
			s.state, s.key = stColon, false
			return scanContinue, ""
		case b == '"':
			return s.endValue()
		case b == '\\':
			s.state = stEscape
			return scanContinue, ""
		case b < 0x20:
			return scanError, "a string cannot hold a control character"
		}
		return scanContinue, ""
	case stEscape:
		switch b {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			s.state = stString
			return scanContinue, ""
		case 'u':
			s.state, s.hex = stUnicode, 0
			return scanContinue, ""
		}
		return scanError, `expected an escape (\", \\, \/, \b, \f, \n, \r, \t or \uXXXX)`
	case stUnicode:
		if isHex(b) {
			if s.hex++; s.hex == 4 {
				s.state = stString
			}
			return scanContinue, ""
		}
		return scanError, `expected four hex digits after \u`
	case stMinus:
		switch {
		case b == '0':
			s.state = stZero
		case isDigit(b):
			s.state = stInt
		default:
			return scanError, "expected a digit after -"
		}
		return scanContinue, ""
	case stZero, stInt, stFrac:
		switch {
		case isDigit(b) && s.state != stZero:
		case b == '.' && s.state != stFrac:
			s.state = stDot
		case b == 'e' || b == 'E':
			s.state = stE
		default:
			return s.endNumber(b)
		}
		return scanContinue, ""
	case stDot:
		if isDigit(b) {
			s.state = stFrac
			return scanContinue, ""
		}
		return scanError, "expected a digit after the decimal point"
	case stE, stESign:
		switch {
		case isDigit(b):
			s.state = stExp
		case (b == '+' || b == '-') && s.state == stE:
			s.state = stESign
		default:
			return scanError, "expected the exponent's digits"
		}
		return scanContinue, ""
	case stExp:
		if isDigit(b) {
			return scanContinue, ""
		}
		return s.endNumber(b)
	case stLiteral:
		if b == s.rest[0] {
			if s.rest = s.rest[1:]; s.rest == "" {
				return s.endValue()
			}
			return scanContinue, ""
		}
		return scanError, "expected true, false or null"
	}
	return scanError, "expected nothing more in this value"
}

// begin starts a value with its first byte.
func (s *scanner) begin(b byte) (scanResult, string) {
	switch {
	case b == '{' || b == '[':
		if len(s.stack) >= maxNesting {
			return scanError, "nested too deep"
		}
		s.stack = append(s.stack, b)
		s.state = stValueOrEnd
		if b == '{' {
			s.state = stKeyOrEnd
		}
	case b == '"':
		s.state = stString
	case b == '-':
		s.state = stMinus
	case b == '0':
		s.state = stZero
	case isDigit(b):
		s.state = stInt
	case b == 't':
		s.state, s.rest = stLiteral, "rue"
	case b == 'f':
		s.state, s.rest = stLiteral, "alse"
	case b == 'n':
		s.state, s.rest = stLiteral, "ull"
	default:
		return scanError, "expected a value"
	}
	return scanContinue, ""
}

func (s *scanner) close() (scanResult, string) {
	s.stack = s.stack[:len(s.stack)-1]
	return s.endValue()
}

// endValue: a value inside a container, or the whole value, is complete.
func (s *scanner) endValue() (scanResult, string) {
	if len(s.stack) == 0 {
		s.state = stDone
		return scanDone, ""
	}
	s.state = stAfter
	return scanContinue, ""
}

// endNumber: a number ended before b.
func (s *scanner) endNumber(b byte) (scanResult, string) {
	if len(s.stack) == 0 {
		s.state = stDone
		return scanEnded, ""
	}
	s.state = stAfter
	return s.step(b)
}

// complete says whether the input may end here: the value is whole (a number ends with the input).
func (s *scanner) complete() bool {
	switch s.state {
	case stDone:
		return true
	case stZero, stInt, stFrac, stExp:
		return len(s.stack) == 0
	}
	return false
}

func (s *scanner) depth() int { return len(s.stack) }
func (s *scanner) inString() bool {
	return s.state == stString || s.state == stEscape || s.state == stUnicode
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }
func isHex(b byte) bool   { return isDigit(b) || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F' }
