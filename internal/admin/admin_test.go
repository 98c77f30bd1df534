package admin

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestHealthAndReadiness(t *testing.T) {
	ready := NewReadiness("kafka", "topics")
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "probe_total", Help: "x"}))
	h := Handler(ready, reg)
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d", code)
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not started") {
		t.Fatalf("/readyz before start = %d %s", code, body)
	}
	ready.Set("kafka", nil)
	ready.Set("topics", errors.New("topics missing: x"))
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "topics missing: x") || !strings.Contains(body, `"kafka","result":"ok"`) {
		t.Fatalf("/readyz with one failing condition = %d %s", code, body)
	}
	ready.Set("topics", nil)
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz when ready = %d", code)
	}
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "probe_total") {
		t.Fatalf("/metrics = %d", code)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/readyz", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST /readyz = %d", rec.Code)
	}
}
