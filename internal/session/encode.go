package session

import (
	"encoding/json"
	"strconv"
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
	if st.Ended != "" {
		b = append(b, `,"e":`...)
		b = appendString(b, string(st.Ended))
	}
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, st.LastActivity, 10)
	b = append(b, `,"q":`...)
	b = strconv.AppendInt(b, st.Seq, 10)
	if st.Running != 0 {
		b = append(b, `,"p":`...)
		b = strconv.AppendInt(b, st.Running, 10)
	}
	if st.Seen != 0 {
		b = append(b, `,"w":`...)
		b = strconv.AppendInt(b, st.Seen, 10)
	}
	if len(st.Sources) > 0 {
		b = append(b, `,"src":[`...)
		for i, s := range st.Sources {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, s)
		}
		b = append(b, ']')
	}
	if len(st.Applied) > 0 {
		b = append(b, `,"a":`...)
		b = appendInts(b, st.Applied)
	}
	if len(st.Recent) > 0 {
		b = append(b, `,"r":[`...)
		for i := range st.Recent {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendDecision(b, &st.Recent[i])
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func appendDecision(b []byte, d *Decision) []byte {
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
	if d.At != 0 {
		b = append(b, `,"p":`...)
		b = strconv.AppendInt(b, d.At, 10)
	}
	if len(d.By) > 0 {
		b = append(b, `,"b":`...)
		b = appendInts(b, d.By)
	}
	if d.Closed != "" {
		b = append(b, `,"e":`...)
		b = appendString(b, string(d.Closed))
	}
	if d.ClosedAt != 0 {
		b = append(b, `,"x":`...)
		b = strconv.AppendInt(b, d.ClosedAt, 10)
	}
	if d.Opener != "" {
		b = append(b, `,"o":`...)
		b = appendString(b, d.Opener)
	}
	if d.OpenedAt != 0 {
		b = append(b, `,"t":`...)
		b = strconv.AppendInt(b, d.OpenedAt, 10)
	}
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

func appendInts(b []byte, v []int64) []byte {
	b = append(b, '[')
	for i, n := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, n, 10)
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

// Upper bounds of encoded sizes: a string escapes to at most 6 bytes per byte (\u00XX, \ufffd), an
// int64 takes at most 20 digits, and every field name and punctuation of a state or decision fits in
// the fixed part.
const (
	escapeFactor   = 6
	intBytes       = 21
	stateFixed     = 128
	decisionFixed  = 96
	stringOverhead = 2
)

// sizeBound is at least len(Encode(st)), computed without encoding: the common case (short ids) is
// far under any cap and needs no encoding to prove it.
func (st *State) sizeBound() int {
	n := stateFixed + escapeFactor*(len(st.ChannelSessionID)+len(st.ConversationID)+len(st.Ended)) + intBytes*(4+len(st.Applied))
	for _, s := range st.Sources {
		n += escapeFactor*len(s) + stringOverhead + 1
	}
	for i := range st.Recent {
		n += st.Recent[i].sizeBound() + 1
	}
	return n
}

func (d *Decision) sizeBound() int {
	return decisionFixed + intBytes*(len(d.After)+len(d.By)+4) +
		escapeFactor*(len(d.ChannelSessionID)+len(d.ConversationID)+len(d.Opener)+len(d.Closed)) +
		len(d.ChannelData) + len(d.Customer)
}

// bound keeps the encoded state within maxBytes by dropping its oldest decisions: only replays of
// what they governed lose their exact answer (they get the current ids, flagged Forgotten, as after
// an eviction for number). The latest decisions go last (the current session's data and the one it
// closed, which a replay of the recent window repeats), and the latest is never dropped. It returns
// how many of those dropped were still inside the window (run, window: running ms).
func (st *State) bound(maxBytes int, run, window int64) (evicted int) {
	if maxBytes <= 0 || st.sizeBound() <= maxBytes {
		return 0
	}
	total := len(Encode(st))
	var scratch []byte
	drop := 0
	for drop < len(st.Recent)-1 && total > maxBytes {
		scratch = appendDecision(scratch[:0], &st.Recent[drop])
		total -= len(scratch) + 1 // and the comma before the next
		if st.Recent[drop+1].At+window >= run {
			evicted++
		}
		drop++
	}
	if drop > 0 {
		st.Recent = append(st.Recent[:0], st.Recent[drop:]...)
	}
	return evicted
}
