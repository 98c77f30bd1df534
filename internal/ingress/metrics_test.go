package ingress_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/ingress"
	"github.com/cimstream/cimstream/internal/metrics"
	"github.com/cimstream/cimstream/internal/stream"
)

// TestRequestsAreCountedByRouteAndCode: the service's metrics see every answer by route and status code,
// its latency, and the in-flight gauge back at zero.
func TestRequestsAreCountedByRouteAndCode(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	h := ingress.NewHandler(ingress.Options{Channels: map[string]string{"web": "web"}, MaxBodyBytes: 4096, MaxConcurrent: 4,
		ProduceTimeout: time.Second, RetryAfter: time.Second}, ackAll{}, m, zap.NewNop())
	srv := httptest.NewServer(h)
	defer srv.Close()
	for path, body := range map[string]string{
		"/cim-messages":        message("m-1", "ann", "hi"),
		"/ccm/message/receive": `{`,
		"/elsewhere":           message("m-2", "ann", "hi"),
	} {
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	want := `
# HELP cimstream_ingress_requests_total HTTP ingress requests answered, by route and status code.
# TYPE cimstream_ingress_requests_total counter
cimstream_ingress_requests_total{code="202",route="/ccm/message/receive"} 0
cimstream_ingress_requests_total{code="202",route="/cim-messages"} 1
cimstream_ingress_requests_total{code="400",route="/ccm/message/receive"} 1
cimstream_ingress_requests_total{code="404",route="other"} 1
cimstream_ingress_requests_total{code="503",route="/ccm/message/receive"} 0
cimstream_ingress_requests_total{code="503",route="/cim-messages"} 0
# HELP cimstream_ingress_requests_in_flight Ingress requests being handled now (ingress.maxConcurrent bounds those admitted).
# TYPE cimstream_ingress_requests_in_flight gauge
cimstream_ingress_requests_in_flight 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "cimstream_ingress_requests_total", "cimstream_ingress_requests_in_flight"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "cimstream_ingress_request_duration_seconds"); n != 3 {
		t.Errorf("%d latency series, want one per route (2 routes and other)", n)
	}
}

// ackAll acknowledges every record at once.
type ackAll struct{}

func (ackAll) Write(_ context.Context, outs []stream.Output) []error { return make([]error, len(outs)) }
