package ingress

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/loadgen"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/pkg/cim"
)

// BenchmarkHandler is the ingress's own work per request (routing, checks, validation, idempotency,
// answer) with a writer that acknowledges at once: what the handler adds to the produce round trip.
func BenchmarkHandler(b *testing.B) {
	opts := testOptions()
	opts.MaxBodyBytes = 1 << 20
	opts.Seen = NewSeen(opts.ProduceTimeout*1000, 100_000, 0, nil)
	h := NewHandler(opts, ackWriter{}, nil, zap.NewNop())
	gen := loadgen.NewGenerator(loadgen.Options{Direction: cim.Inbound, Topics: []string{"x"}, Size: 1024, RunID: "b"})
	bodies := make([]string, 1024)
	for i := range bodies {
		_, _, v, _ := gen.Message(i)
		bodies[i] = strings.Replace(string(v), `"id":"b-`+strconv.Itoa(i)+`"`, `"id":"b-`+strconv.Itoa(i)+`-%d"`, 1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		body := strings.Replace(bodies[i%len(bodies)], "%d", strconv.Itoa(i), 1)
		req := httptest.NewRequest(http.MethodPost, "/cim-messages", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusAccepted {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
}

// ackWriter acknowledges every record at once and keeps nothing.
type ackWriter struct{}

func (ackWriter) Write(_ context.Context, outs []stream.Output) []error {
	return make([]error, len(outs))
}
