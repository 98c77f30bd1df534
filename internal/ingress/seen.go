package ingress

import (
	"container/list"
	"sync"
	"time"
)

// Seen remembers the answers given to accepted message ids for a window, so that a retry with the same
// id gets the same answer and writes nothing. It is per process: a retry that reaches another instance
// is written again (with the same id, so consumers can still dedupe on it).
//
// A request for an id whose first request is still in flight waits for that one's outcome and gets its
// answer, 202 or 503: two concurrent retries never both write, and while Kafka is down they never queue one
// attempt after another (each would hold a concurrency slot for a further produceTimeout). Failed attempts
// are then forgotten, so a request arriving after a 503 writes.
type Seen struct {
	window time.Duration
	limit  int
	now    func() time.Time

	mu      sync.Mutex
	entries map[string]*seenEntry
	order   *list.List // accepted ids, oldest first
}

type seenEntry struct {
	digest [32]byte
	done   chan struct{}
	answer answer
	at     time.Time
	elem   *list.Element
}

// NewSeen remembers up to limit ids for window each.
func NewSeen(window time.Duration, limit int) *Seen {
	return &Seen{window: window, limit: max(1, limit), now: time.Now, entries: map[string]*seenEntry{}, order: list.New()}
}

// Do returns the remembered answer for id, or runs attempt and remembers its answer when ok. The remembered
// answer wins whatever the body: a resent copy of an accepted message is often re-serialised (whitespace,
// key order, a new header.timestamp), and a 4xx would tell its sender the message was not delivered when it
// was. differs reports that the body (digest) is not the one accepted, for the caller to log.
func (s *Seen) Do(id string, digest [32]byte, attempt func() (answer, bool)) (a answer, differs bool) {
	s.mu.Lock()
	s.expire()
	if e, found := s.entries[id]; found {
		s.mu.Unlock()
		<-e.done
		return e.answer, e.elem != nil && e.digest != digest
	}
	e := &seenEntry{digest: digest, done: make(chan struct{})}
	s.entries[id] = e
	s.mu.Unlock()

	a, ok := attempt()
	s.mu.Lock()
	e.answer = a
	if ok {
		e.at = s.now()
		e.elem = s.order.PushBack(id)
	} else {
		delete(s.entries, id)
	}
	close(e.done)
	s.expire()
	s.mu.Unlock()
	return a, false
}

// Len is the number of ids remembered (accepted, within the window).
func (s *Seen) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire()
	return s.order.Len()
}

// expire forgets ids older than the window and the oldest beyond the limit; s.mu is held.
func (s *Seen) expire() {
	now := s.now()
	for f := s.order.Front(); f != nil; f = s.order.Front() {
		id := f.Value.(string)
		e := s.entries[id]
		if s.order.Len() <= s.limit && now.Sub(e.at) < s.window {
			return
		}
		s.order.Remove(f)
		delete(s.entries, id)
	}
}
