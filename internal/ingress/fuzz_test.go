package ingress

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/pkg/cim"
)

// FuzzIngressHandler drives the handler with random bodies, content types, tokens and ids against a fake
// producer that records what it acknowledged. Invariants: no panic; never a 2xx without a record; every 2xx
// body names the id of a record produced by that request.
func FuzzIngressHandler(f *testing.F) {
	f.Add(valid, strings.Replace(valid, "Hello", "Bye", 1), "application/json", "tok-a", "", false)
	f.Add(valid, strings.Replace(valid, "Hello", "Bye", 1), "application/json", "tok-c", "", false)
	f.Add(msgFor("1", "4144", "x"), msgFor("1", "4144", "x"), "application/json; charset=utf-8", "tok-b", "", false)
	f.Add(`{"header":{"sender":{"id":"a","type":"AGENT","senderName":"A"},"conversationId":"c"},"body":{"type":"PLAIN"}}`, "", "application/json", "tok-a", "", true)
	f.Add(`{`, `}`, "text/plain", "nope", "", false)
	f.Add(valid, valid, "application/json", "tok-c", "x-y:1", true)
	tokens, _ := tokensFile(f, "tok-a serviceIdentifiers=web*\ntok-b channels=whats*\ntok-c\n")
	f.Fuzz(func(t *testing.T, body, retry, contentType, token, extraHeader string, fail bool) {
		rec := &recorder{}
		if fail {
			rec.err = errTransient
		}
		opts := testOptions()
		opts.Channels = map[string]string{"web": "web", "4144": "whatsapp"}
		opts.DefaultChannel = "web"
		opts.Tokens = tokens
		opts.ProduceTimeout = 30 * time.Millisecond
		h := NewHandler(opts, rec, nil, zap.NewNop())
		// The second request is a retry of the same id (or not): it must not be answered 2xx without a record
		// of its own body either.
		for _, body := range []string{body, retry} {
			before := len(rec.written())
			req := httptest.NewRequest(http.MethodPost, "/cim-messages", strings.NewReader(body))
			req.Header.Set("Content-Type", contentType)
			req.Header.Set("Authorization", "Bearer "+token)
			if k, v, ok := strings.Cut(extraHeader, ":"); ok && k != "" {
				req.Header[k] = []string{v}
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code/100 != 2 {
				if n := len(rec.written()); n != before {
					t.Fatalf("%d answered, but %d records were written", w.Code, n-before)
				}
				continue
			}
			var a Accepted
			if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil || a.ID == "" || a.Status != "ACCEPTED" {
				t.Fatalf("2xx body %q does not name an id", w.Body.Bytes())
			}
			outs := rec.written()
			if len(outs) == before {
				// A retry answered from memory: a record with this id and exactly this body was produced before.
				if !produced(outs, a.ID, body) {
					t.Fatalf("%d with id %q answered from memory, but no record of this body was produced", w.Code, a.ID)
				}
				continue
			}
			m, err := cim.Decode(outs[len(outs)-1].Value)
			if err != nil || m.ID() != a.ID {
				t.Fatalf("2xx names id %q, the record produced is %q (%v)", a.ID, outs[len(outs)-1].Value, err)
			}
		}
	})
}

var errTransient = &transientErr{}

type transientErr struct{}

func (*transientErr) Error() string { return "broker down" }

func produced(outs []stream.Output, id, body string) bool {
	for _, o := range outs {
		if m, err := cim.Decode(o.Value); err == nil && m.ID() == id && string(o.Value) == body {
			return true
		}
	}
	return false
}
