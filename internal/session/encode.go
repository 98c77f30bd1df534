package session

import (
	"encoding/json"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Encode serializes a state for the changelog: the same JSON encoding/json would write for State, built
// by hand because it runs once per inbound message.
func Encode(st *State) []byte {
	b := make([]byte, 0, 128+len(st.Recent)*128+len(st.Sources)*48+st.dataBytes())
	b = append(b, `{"s":`...)
	b = appendString(b, st.ChannelSessionID)
	b = append(b, `,"c":`...)
	b = appendString(b, st.ConversationID)
	b = append(b, `,"open":`...)
	b = strconv.AppendBool(b, st.Open)
	b = appendOptString(b, `,"e":`, string(st.Ended))
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, st.LastActivity, 10)
	b = append(b, `,"q":`...)
	b = strconv.AppendInt(b, st.Seq, 10)
	b = appendOptInt(b, `,"p":`, st.Running)
	b = appendOptInt(b, `,"w":`, st.Seen)
	if len(st.Sources) > 0 {
		b = append(b, `,"src":`...)
		b = appendList(b, st.Sources, appendString)
	}
	if len(st.Applied) > 0 {
		b = append(b, `,"a":`...)
		b = appendInts(b, st.Applied)
	}
	if len(st.Recent) > 0 {
		b = append(b, `,"r":`...)
		b = appendList(b, st.Recent, appendDecision)
	}
	return append(b, '}')
}

func appendDecision(b []byte, d Decision) []byte {
	b = append(b, '{')
	if len(d.After) > 0 {
		b = append(b, `"a":`...)
		b = appendInts(b, d.After)
		b = append(b, ',')
	}
	b = append(b, `"s":`...)
	b = appendString(b, d.ChannelSessionID)
	b = append(b, `,"c":`...)
	b = appendString(b, d.ConversationID)
	b = appendOptInt(b, `,"p":`, d.At)
	if len(d.By) > 0 {
		b = append(b, `,"b":`...)
		b = appendInts(b, d.By)
	}
	b = appendOptString(b, `,"e":`, string(d.Closed))
	b = appendOptInt(b, `,"x":`, d.ClosedAt)
	b = appendOptString(b, `,"o":`, d.Opener)
	b = appendOptInt(b, `,"t":`, d.OpenedAt)
	if len(d.ChannelData) > 0 {
		b = append(b, `,"cd":`...)
		b = append(b, d.ChannelData...)
	}
	if len(d.Customer) > 0 {
		b = append(b, `,"cu":`...)
		b = append(b, d.Customer...)
	}
	return append(b, '}')
}

// appendOptInt writes field (its name, with the comma before it) and v, or nothing when v is 0, as
// omitempty does.
func appendOptInt(b []byte, field string, v int64) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendInt(append(b, field...), v, 10)
}

// appendOptString is appendOptInt for a string: nothing when it is empty.
func appendOptString(b []byte, field, s string) []byte {
	if s == "" {
		return b
	}
	return appendString(append(b, field...), s)
}

func appendInts(b []byte, v []int64) []byte {
	return appendList(b, v, func(b []byte, n int64) []byte { return strconv.AppendInt(b, n, 10) })
}

// appendList writes v as a JSON array, each element by appendElem.
func appendList[T any](b []byte, v []T, appendElem func([]byte, T) []byte) []byte {
	b = append(b, '[')
	for i, x := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendElem(b, x)
	}
	return append(b, ']')
}

// appendString writes s as a JSON string (ids are usually plain ASCII; anything else is escaped).
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// dataBytes is the size of the session data the decisions carry.
func (st *State) dataBytes() int {
	n := 0
	for _, d := range st.Recent {
		n += len(d.ChannelData) + len(d.Customer) + len(d.Opener) + 40
	}
	return n
}

// Exact encoded sizes, computed without encoding (no allocation): bound runs for every record, and a
// key near the cap must not pay for an encoding it throws away (the changelog write makes the one it
// needs). Each mirrors the append function of the same field; TestEncodedLenIsExact holds them to it.

// stringLen is len(appendString(nil, s)): encoding/json's escaping, HTML-safe.
func stringLen(s string) int {
	n := 2
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t':
				n += 2
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				n += 6 // \u00XX
			default:
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || r == '\u2028' || r == '\u2029' {
			n += 6 // \ufffd for an invalid byte, \u2028, \u2029
		} else {
			n += size
		}
		i += size
	}
	return n
}

func intLen(v int64) int {
	n := 1
	if v < 0 {
		n++ // the sign; -v may overflow, so count on v itself
	}
	for v >= 10 || v <= -10 {
		v /= 10
		n++
	}
	return n
}

func optIntLen(field string, v int64) int {
	if v == 0 {
		return 0
	}
	return len(field) + intLen(v)
}

func optStringLen(field, s string) int {
	if s == "" {
		return 0
	}
	return len(field) + stringLen(s)
}

func intsLen(v []int64) int { return listLen(v, intLen) }

// listLen is len(appendList(nil, v, appendElem)), elemLen giving each element's.
func listLen[T any](v []T, elemLen func(T) int) int {
	n := 2 + max(len(v)-1, 0)
	for _, x := range v {
		n += elemLen(x)
	}
	return n
}

// encodedLen is len(Encode(st)).
func (st *State) encodedLen() int {
	n := len(`{"s":`) + stringLen(st.ChannelSessionID) + len(`,"c":`) + stringLen(st.ConversationID) + len(`,"open":false`)
	if st.Open {
		n--
	}
	n += optStringLen(`,"e":`, string(st.Ended))
	n += len(`,"t":`) + intLen(st.LastActivity) + len(`,"q":`) + intLen(st.Seq)
	n += optIntLen(`,"p":`, st.Running)
	n += optIntLen(`,"w":`, st.Seen)
	if len(st.Sources) > 0 {
		n += len(`,"src":`) + listLen(st.Sources, stringLen)
	}
	if len(st.Applied) > 0 {
		n += len(`,"a":`) + intsLen(st.Applied)
	}
	if len(st.Recent) > 0 {
		n += len(`,"r":[]`) + len(st.Recent) - 1
		for i := range st.Recent {
			n += st.Recent[i].encodedLen()
		}
	}
	return n + 1
}

// encodedLen is len(appendDecision(nil, d)). The part that never changes once the decision is made
// (its strings and data, which can be kilobytes to scan) is computed once; After and By change when
// sources come and go, and are counted each time.
func (d *Decision) encodedLen() int {
	if d.fixedLen == 0 {
		n := len(`{"s":`) + stringLen(d.ChannelSessionID) + len(`,"c":`) + stringLen(d.ConversationID) + len(`}`)
		n += optIntLen(`,"p":`, d.At)
		n += optStringLen(`,"e":`, string(d.Closed))
		n += optIntLen(`,"x":`, d.ClosedAt)
		n += optStringLen(`,"o":`, d.Opener)
		n += optIntLen(`,"t":`, d.OpenedAt)
		if len(d.ChannelData) > 0 {
			n += len(`,"cd":`) + len(d.ChannelData)
		}
		if len(d.Customer) > 0 {
			n += len(`,"cu":`) + len(d.Customer)
		}
		d.fixedLen = n
	}
	n := d.fixedLen
	if len(d.After) > 0 {
		n += len(`"a":,`) + intsLen(d.After)
	}
	if len(d.By) > 0 {
		n += len(`,"b":`) + intsLen(d.By)
	}
	return n
}

// maxSources bounds the source partitions a key remembers (Sources): a customer's records come from a
// handful (its channel topic's partition, both inbound stages naming the same one), a connector that
// spreads a customer over every partition of a large topic from dozens. Beyond it, or when the cap in
// bytes needs the room, the least recently applied go first (see bound).
const maxSources = 64

// bound keeps the state within maxSources source partitions and maxBytes encoded bytes, whatever its
// records carry, so the table holds exactly what the changelog can take. What goes, in this order:
//
//  1. Source partitions no kept decision needs: none of their records applied came after the oldest
//     decision kept, so a replay of one would be answered as forgotten anyway (not counted).
//  2. For bytes, the oldest decisions (evicted when inside the window), never the newest that carries
//     ids (the one current() finds), the one before it when that one closed a session (the Previous
//     its replay repeats), nor what came after it (an END_CHAT or an idle close): a replay of the
//     records that made them repeats STARTED and ENDED byte for byte.
//  3. The least recently applied source partitions (counted): the records applied from one are no
//     longer recognised, so a replay of one is applied again as a new record; and once the partition
//     sends again, its records from before are answered as forgotten (see applied).
//  4. When even that does not fit (ids no validator bounded, or a cap set very low), the state is reset
//     (counted): it keeps the current session's ids but no decisions' data and no sources but the
//     latest; when the ids alone do not fit either, the key starts fresh, as after a corrupt state.
//
// run and window (running ms) date the decisions for counting evictions.
func (st *State) bound(maxBytes int, run, window int64) (tr Trimmed) {
	over := func() bool { return maxBytes > 0 && st.encodedLen() > maxBytes }
	for len(st.Sources) > maxSources || over() {
		if i := st.unneededSource(); i >= 0 {
			st.dropSource(i)
			continue
		}
		if len(st.Sources) <= maxSources && st.protectedFrom() > 0 {
			if st.Recent[1].At+window >= run {
				tr.Evicted++
			}
			st.Recent = append(st.Recent[:0], st.Recent[1:]...)
			continue
		}
		if len(st.Sources) > 1 { // the last is the record just applied
			st.dropSource(st.oldestSource())
			tr.SourcesDropped++
			continue
		}
		break
	}
	if over() {
		st.reset(maxBytes, run)
		tr.Reset = true
	}
	return tr
}

// protectedFrom is the index of the oldest decision the cap never drops (see bound).
func (st *State) protectedFrom() int {
	for i := len(st.Recent) - 1; i >= 0; i-- {
		if st.Recent[i].ChannelSessionID != "" {
			if st.Recent[i].Closed != "" && i > 0 {
				return i - 1
			}
			return i
		}
	}
	return max(len(st.Recent)-1, 0)
}

// unneededSource is a source no kept decision needs (see bound), or -1: nothing applied from it after
// the oldest decision (After is a snapshot of Applied, so the later ones hold at least as much), and no
// decision made by one of its records.
func (st *State) unneededSource() int {
	if len(st.Recent) == 0 {
		return -1
	}
	oldest := st.Recent[0].After
	for i := range st.Sources {
		if i < len(oldest) && oldest[i] >= st.Applied[i] && !st.madeFrom(i, 0) {
			return i
		}
	}
	return -1
}

// oldestSource is the least recently applied source (Sources are kept in that order, see applied)
// that no protected decision was made by, else the least recently applied.
func (st *State) oldestSource() int {
	p := st.protectedFrom()
	for i := range len(st.Sources) - 1 {
		if !st.madeFrom(i, p) {
			return i
		}
	}
	return 0
}

// madeFrom reports whether a record of source i made one of the decisions from index from on.
func (st *State) madeFrom(i, from int) bool {
	return slices.ContainsFunc(st.Recent[from:], func(d Decision) bool { return len(d.By) == 2 && d.By[0] == int64(i) })
}

// dropSource forgets source i: its entry in Sources, Applied and every decision's After; a decision
// one of its records made keeps no By (that record is no longer recognised).
func (st *State) dropSource(i int) {
	st.Sources = slices.Delete(st.Sources, i, i+1)
	st.Applied = slices.Delete(st.Applied, i, i+1)
	for j := range st.Recent {
		d := &st.Recent[j]
		if i < len(d.After) {
			d.After = slices.Delete(d.After, i, i+1)
		}
		if len(d.By) == 2 {
			switch {
			case d.By[0] == int64(i):
				d.By = nil
			case d.By[0] > int64(i):
				d.By[0]--
			}
		}
	}
}

// reset is bound's last resort (see there).
func (st *State) reset(maxBytes int, run int64) {
	if n := len(st.Sources); n > 1 {
		st.Sources, st.Applied = st.Sources[n-1:], st.Applied[n-1:]
	}
	// Everything applied so far is older than the one decision kept: a replay is answered as forgotten.
	st.Recent = []Decision{{After: slices.Clone(st.Applied), ChannelSessionID: st.ChannelSessionID, ConversationID: st.ConversationID, At: run}}
	if st.encodedLen() > maxBytes {
		st.ChannelSessionID, st.ConversationID, st.Open, st.Ended = "", "", false, ""
		st.Sources, st.Applied = nil, nil
		st.Recent = []Decision{{At: run}}
	}
}
