package cim

import (
	"strconv"
	"strings"

	"github.com/cimstream/cimstream/internal/stream"
)

// Violation codes: stable identifiers that consumers (dead-letter readers, CI checks) can branch on.
const (
	CodeMalformed   = "malformed"   // not JSON, not UTF-8, or the top level is not an object
	CodeTooLarge    = "too_large"   // larger than the size limit
	CodeTooDeep     = "too_deep"    // nested deeper than the depth limit
	CodeRequired    = "required"    // a required field is absent or null
	CodeType        = "type"        // a field has the wrong JSON type
	CodeEnum        = "enum"        // a value is not one of the allowed values
	CodeFormat      = "format"      // a string is not in the required format (URL, timestamp, digits)
	CodeRange       = "range"       // a number is out of its range
	CodeEmpty       = "empty"       // a string is blank or an array is empty where content is required
	CodeUnsupported = "unsupported" // body.type is not a known type
	CodeTooLong     = "too_long"    // an identifying string is longer than its bound (Limits.MaxIDBytes)
)

// Violation is one broken rule: where (a JSON path such as body.buttons[1].payload; empty for the whole
// message), a stable code, and a sentence for a connector developer. It is the runtime's dead-letter
// reason (internal/stream), so a stage dead-letters with what validation found without knowing CIM.
type Violation = stream.Violation

// Violations is every broken rule of a message; empty means valid.
type Violations = stream.Violations

// loc is a JSON path built on the stack while validating and rendered only when a violation needs it.
type loc struct {
	parent *loc
	key    string
	index  int // >= 0 for an array element
}

func (l *loc) String() string {
	if l == nil {
		return ""
	}
	var b strings.Builder
	l.write(&b)
	return b.String()
}

// detached returns a loc on the heap that renders as l does, for a path handed to a function value
// (whose use escape analysis cannot see). Without it the chain of every message's locs would move to
// the heap, two allocations per Validate, for the few bodies that reach such a function.
func (l *loc) detached() *loc { return &loc{key: l.String(), index: -1} }

func (l *loc) write(b *strings.Builder) {
	if l.parent != nil {
		l.parent.write(b)
	}
	if l.index >= 0 {
		b.WriteByte('[')
		b.WriteString(strconv.Itoa(l.index))
		b.WriteByte(']')
		return
	}
	if l.key == "" {
		return
	}
	if b.Len() > 0 {
		b.WriteByte('.')
	}
	b.WriteString(l.key)
}
