package ingress

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/stage"
)

// TestOneTokenFloodingUniqueIDsDoesNotEvictAnothersMemory: a token sending far more unique ids than the
// idempotency memory holds (in entries and in bytes) forgets its own oldest ids, not another token's: that
// token's same-body retry within the window still gets the same answer and writes nothing.
func TestOneTokenFloodingUniqueIDsDoesNotEvictAnothersMemory(t *testing.T) {
	for _, c := range []struct {
		name     string
		limit    int
		maxBytes int64
	}{{"entries", 40, 0}, {"bytes", 100_000, 12 << 10}} {
		t.Run(c.name, func(t *testing.T) {
			tokens, _ := tokensFile(t, "victim\nflood\n")
			budget := stage.NewBudget(64 << 20)
			opts := testOptions()
			opts.Tokens = tokens
			opts.Budget = budget
			opts.Seen = NewSeen(time.Minute, c.limit, c.maxBytes, budget)
			rec := &recorder{}
			srv := serve(t, opts, rec)
			url := srv.URL + "/cim-messages"
			first := post(t, url, "application/json", msgFor("v-1", "web", "mine"), bearerOf("victim")...)
			if first.code != http.StatusAccepted {
				t.Fatalf("victim: %d %s", first.code, first.body)
			}
			for i := range 200 {
				if r := post(t, url, "application/json", msgFor(fmt.Sprint("f-", i), "web", "flood"), bearerOf("flood")...); r.code != http.StatusAccepted {
					t.Fatalf("flood %d: %d %s", i, r.code, r.body)
				}
			}
			if n := opts.Seen.Len(); n >= 200 {
				t.Fatalf("%d ids remembered: the limit did not bind", n)
			}
			again := post(t, url, "application/json", msgFor("v-1", "web", "mine"), bearerOf("victim")...)
			if again.code != first.code || !bytes.Equal(again.body, first.body) {
				t.Errorf("victim's retry: %d %s, first %d %s", again.code, again.body, first.code, first.body)
			}
			if n := len(rec.written()); n != 201 {
				t.Errorf("%d records, want 201: the victim's retry was written again (its memory evicted by the flood)", n)
			}
			if used := budget.Used(); used != opts.Seen.Bytes() {
				t.Errorf("budget holds %d, the ids remembered %d", used, opts.Seen.Bytes())
			}
		})
	}
}
