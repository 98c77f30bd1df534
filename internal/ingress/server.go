package ingress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/stage"
)

// tokensReloadInterval is how often the tokens file is read again.
const tokensReloadInterval = time.Second

// Server is the ingress listener. It runs as the service's front door: on shutdown it stops accepting and
// answers every request in flight before the pipelines are stopped.
type Server struct {
	cfg     config.Ingress
	budget  time.Duration
	handler *Handler
	tokens  *Tokens
	log     *zap.Logger
	addr    chan string
}

// NewServer checks the tokens file and the TLS files and returns a server writing through w; obs may be nil.
// The request bodies and idempotency memory it holds are charged to budget, the service's memory budget
// (none given: a budget of memory.budgetBytes of its own).
func NewServer(cfg config.Config, w Writer, obs Observer, log *zap.Logger, budget ...*stage.Budget) (*Server, error) {
	in := cfg.Ingress
	var tokens *Tokens
	if in.TokensFile != "" {
		var err error
		if tokens, err = LoadTokens(in.TokensFile, log); err != nil {
			return nil, err
		}
	}
	if in.TLS.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(in.TLS.CertFile, in.TLS.KeyFile); err != nil {
			return nil, fmt.Errorf("config ingress.tls.certFile: %w", err)
		}
	}
	mem := stage.NewBudget(cfg.Memory.BudgetBytes)
	if len(budget) > 0 && budget[0] != nil {
		mem = budget[0]
	}
	return &Server{
		cfg: in, budget: cfg.Shutdown.FrontBudget(), handler: NewHandler(OptionsFrom(cfg, tokens, mem), w, obs, log),
		tokens: tokens, log: log, addr: make(chan string, 1),
	}, nil
}

// Name implements service.Pipeline.
func (s *Server) Name() string { return "ingress" }

// Addr yields the bound address once the server listens (tests bind port 0).
func (s *Server) Addr() <-chan string { return s.addr }

// Handler is the request handler (for tests and the benchmark).
func (s *Server) Handler() http.Handler { return s.handler }

// Run serves until ctx ends, then stops accepting and waits (up to shutdown.timeout less the pipelines'
// reserve) for the requests in flight to be answered; the connections still open then are closed.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Address)
	if err != nil {
		return fmt.Errorf("ingress.address %s: %w", s.cfg.Address, err)
	}
	s.addr <- ln.Addr().String()
	limit := newLimitListener(ln, s.cfg.MaxConnections)
	ln = limit
	srv := &http.Server{
		Handler:           s.handler,
		ConnState:         limit.connState,
		ConnContext:       connContext,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		// Reading, producing and writing the answer: a request is never cut before its produce timeout.
		WriteTimeout: s.cfg.ReadTimeout + s.cfg.ProduceTimeout + 5*time.Second,
		IdleTimeout:  s.cfg.IdleTimeout,
		ErrorLog:     zap.NewStdLog(s.log.Named("ingress-http")),
	}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	if s.tokens != nil {
		go s.tokens.Watch(watchCtx, tokensReloadInterval)
	}
	served := make(chan error, 1)
	go func() {
		if s.cfg.TLS.CertFile != "" {
			served <- srv.ServeTLS(ln, s.cfg.TLS.CertFile, s.cfg.TLS.KeyFile)
			return
		}
		served <- srv.Serve(ln)
	}()
	s.log.Info("ingress listening", zap.String("address", ln.Addr().String()), zap.Bool("tls", s.cfg.TLS.CertFile != ""),
		zap.Bool("auth", s.tokens != nil))
	select {
	case err := <-served:
		return fmt.Errorf("ingress server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.budget)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// A client still sending (or a request still producing) must not use the pipelines' reserve: cut it.
		_ = srv.Close()
		return fmt.Errorf("ingress: requests still in flight after %v, their connections closed: %w", s.budget, err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	s.log.Info("ingress stopped: every request answered")
	return nil
}
