package ingress

import (
	"container/list"
	"crypto/sha256"
	"encoding/json"
	"sort"
	"sync"
	"time"

	"github.com/cimstream/cimstream/internal/stage"
)

// Seen remembers the answers given to accepted messages for a window, so that a retry gets the same
// answer and writes nothing. A message is known by its tenant (token), channel and id: ids of other tokens
// or channels never collide. It is per process: a retry that reaches another instance is written again
// (with the same id, so consumers can still dedupe on it).
//
// A request for a key whose first request is still in flight waits for that one's outcome and gets its
// answer, 202 or 503: two concurrent retries never both write, and while Kafka is down they never queue one
// attempt after another (each would hold a concurrency slot for a further produceTimeout). Failed attempts
// are then forgotten, so a request arriving after a 503 writes.
//
// Memory is bounded in entries and in bytes (key, digests and answer of each), and the bytes are charged to
// the service's memory budget. Over a bound the oldest id of the tenant holding the most (entries, or bytes)
// goes first: a tenant flooding unique ids forgets its own, never another tenant's within the window.
type Seen struct {
	window   time.Duration
	limit    int
	maxBytes int64
	budget   *stage.Budget
	now      func() time.Time

	mu      sync.Mutex
	entries map[seenKey]*seenEntry
	order   *list.List // accepted keys, oldest first: the window
	tenants map[[32]byte]*seenTenant
	bytes   int64
}

// seenTenant is what one tenant holds: its accepted keys, oldest first, and their bytes.
type seenTenant struct {
	order *list.List
	bytes int64
}

type seenKey struct {
	tenant  [32]byte
	channel string
	id      string
}

type seenEntry struct {
	body   bodyDigest
	done   chan struct{}
	answer answer
	at     time.Time
	elem   *list.Element // in Seen.order
	telem  *list.Element // in its tenant's order
	size   int64
}

// bodyDigest is a digest of the whole body and one per top-level member, to name what differs.
type bodyDigest struct {
	all   [32]byte
	parts map[string][8]byte
}

// seenOverhead approximates the map slot, list element and struct of an entry beyond its strings.
const seenOverhead = 200

// digestBody digests body and its top-level members (a body that is not a JSON object has no parts).
func digestBody(body []byte) bodyDigest {
	d := bodyDigest{all: sha256.Sum256(body)}
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) == nil {
		d.parts = make(map[string][8]byte, len(top))
		for k, v := range top {
			s := sha256.Sum256(v)
			d.parts[k] = [8]byte(s[:8])
		}
	}
	return d
}

// differs lists the top-level members whose bytes differ between a and b.
func (a bodyDigest) differs(b bodyDigest) []string {
	var out []string
	for k, v := range a.parts {
		if w, ok := b.parts[k]; !ok || w != v {
			out = append(out, k)
		}
	}
	for k := range b.parts {
		if _, ok := a.parts[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// NewSeen remembers up to limit keys and maxBytes (<= 0: no byte bound) for window each, charging budget.
func NewSeen(window time.Duration, limit int, maxBytes int64, budget *stage.Budget) *Seen {
	return &Seen{window: window, limit: max(1, limit), maxBytes: maxBytes, budget: budget, now: time.Now,
		entries: map[seenKey]*seenEntry{}, order: list.New(), tenants: map[[32]byte]*seenTenant{}}
}

// conflict is a request whose key was accepted with another body.
type conflict struct {
	differs []string
	at      time.Time
}

// Do returns the remembered answer for key, or runs attempt and remembers its answer when ok. A key accepted
// with another body is a conflict: never the first's 202, since this body was not written.
func (s *Seen) Do(key seenKey, body bodyDigest, attempt func() (answer, bool)) (answer, *conflict) {
	s.mu.Lock()
	s.expire()
	if e, found := s.entries[key]; found {
		s.mu.Unlock()
		<-e.done
		if e.elem != nil && e.body.all != body.all {
			return answer{}, &conflict{differs: e.body.differs(body), at: e.at}
		}
		// Accepted with this body, or failed (its 503, whatever this body: a retry writes).
		return e.answer, nil
	}
	e := &seenEntry{body: body, done: make(chan struct{})}
	s.entries[key] = e
	s.mu.Unlock()

	a, ok := attempt()
	s.mu.Lock()
	e.answer = a
	if ok {
		e.at = s.now()
		e.size = int64(seenOverhead + len(key.channel) + len(key.id) + len(key.tenant) + len(body.all) + len(a.body) +
			len(body.parts)*(8+16))
		for k := range body.parts {
			e.size += int64(len(k))
		}
		for k, vs := range a.header {
			e.size += int64(len(k))
			for _, v := range vs {
				e.size += int64(len(v))
			}
		}
		e.elem = s.order.PushBack(key)
		st := s.tenants[key.tenant]
		if st == nil {
			st = &seenTenant{order: list.New()}
			s.tenants[key.tenant] = st
		}
		e.telem = st.order.PushBack(key)
		st.bytes += e.size
		s.bytes += e.size
		s.budget.Take(e.size)
	} else {
		delete(s.entries, key)
	}
	close(e.done)
	s.expire()
	s.mu.Unlock()
	return a, nil
}

// Len is the number of keys remembered (accepted, within the window).
func (s *Seen) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire()
	return s.order.Len()
}

// Bytes is the memory the remembered keys are counted for.
func (s *Seen) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// expire forgets keys older than the window, then, while over a limit, the oldest of the tenant holding the
// most of what is over it; s.mu is held.
func (s *Seen) expire() {
	now := s.now()
	for f := s.order.Front(); f != nil && now.Sub(s.entries[f.Value.(seenKey)].at) >= s.window; f = s.order.Front() {
		s.forget(f.Value.(seenKey))
	}
	for {
		overEntries := s.order.Len() > s.limit
		if !overEntries && (s.maxBytes <= 0 || s.bytes <= s.maxBytes) {
			return
		}
		// A few tenants (one per token): a scan is cheaper than keeping them ordered.
		var big *seenTenant
		for _, st := range s.tenants {
			if big == nil || (overEntries && st.order.Len() > big.order.Len()) || (!overEntries && st.bytes > big.bytes) {
				big = st
			}
		}
		s.forget(big.order.Front().Value.(seenKey))
	}
}

// forget drops an accepted key; s.mu is held.
func (s *Seen) forget(key seenKey) {
	e := s.entries[key]
	st := s.tenants[key.tenant]
	s.order.Remove(e.elem)
	st.order.Remove(e.telem)
	st.bytes -= e.size
	if st.order.Len() == 0 {
		delete(s.tenants, key.tenant)
	}
	delete(s.entries, key)
	s.bytes -= e.size
	s.budget.Give(e.size)
}
