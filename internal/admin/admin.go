// Package admin serves the operator endpoints: /healthz, /readyz and /metrics.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Readiness collects the conditions /readyz reports: each component sets its own condition, and the
// process is ready only when every registered condition is satisfied.
type Readiness struct {
	mu         sync.Mutex
	conditions map[string]error
}

// NewReadiness returns a Readiness with the given conditions registered as not yet satisfied.
func NewReadiness(names ...string) *Readiness {
	r := &Readiness{conditions: map[string]error{}}
	for _, n := range names {
		r.conditions[n] = errors.New("not started")
	}
	return r
}

// Set records a condition: nil means satisfied.
func (r *Readiness) Set(name string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.conditions[name] = err
}

// Check returns every condition and whether all are satisfied.
func (r *Readiness) Check() (map[string]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]string, len(r.conditions))
	ok := true
	for n, err := range r.conditions {
		if err != nil {
			out[n] = err.Error()
			ok = false
		} else {
			out[n] = "ok"
		}
	}
	return out, ok
}

// Handler returns the admin mux: /healthz answers 200 while the process serves HTTP; /readyz answers
// 200 only when every readiness condition holds, else 503 with the failing ones; /metrics exposes gatherer.
func Handler(ready *Readiness, gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		conds, ok := ready.Check()
		status, code := "ready", http.StatusOK
		if !ok {
			status, code = "not ready", http.StatusServiceUnavailable
		}
		writeJSON(w, code, map[string]any{"status": status, "checks": sorted(conds)})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	return mux
}

type check struct {
	Name   string `json:"name"`
	Result string `json:"result"`
}

func sorted(m map[string]string) []check {
	out := make([]check, 0, len(m))
	for k, v := range m {
		out = append(out, check{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Server is the admin HTTP server with bounded reads, so a slow client cannot hold connections open.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Listen binds address (default 127.0.0.1:8080: not exposed beyond the host unless configured).
func Listen(address string, readHeaderTimeout time.Duration, h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", address)
	if err != nil {
		return nil, err
	}
	return &Server{ln: ln, srv: &http.Server{
		Handler:           http.MaxBytesHandler(h, 1<<16),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    1 << 16,
	}}, nil
}

// Addr is the bound address (useful when the configured port is 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve blocks until Shutdown.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops accepting and waits for in-flight requests until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
