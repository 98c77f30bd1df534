// Package service wires a cimstream process together: Kafka connectivity, topic checks, the admin
// server, the pipelines, and a bounded shutdown.
package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/admin"
	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/kafkaedge/topics"
	"github.com/cimstream/cimstream/internal/metrics"
	"github.com/cimstream/cimstream/internal/retry"
	"github.com/cimstream/cimstream/internal/stage"
)

// Version is set at build time with -ldflags "-X github.com/cimstream/cimstream/internal/service.Version=...".
var Version = "dev"

// Pipeline is a long-running stage (inbound, outbound). Run returns when ctx is cancelled and its
// in-flight work is drained and committed, or with the error that stopped it.
type Pipeline interface {
	Name() string
	Run(ctx context.Context) error
}

// Readiness conditions every process reports.
const (
	ReadyKafka  = "kafka"
	ReadyTopics = "topics"
)

// Service is one cimstream process.
type Service struct {
	cfg      config.Config
	log      *zap.Logger
	kafka    *kafkaclient.Factory
	registry *prometheus.Registry
	metrics  *metrics.Metrics
	egress   *metrics.Egress
	stats    *kafkaedge.Stats
	budget   *stage.Budget
	// collectors is everything registered, to list the metric names.
	collectors []prometheus.Collector
	ready      *admin.Readiness
	pipelines  []Pipeline
	// fronts take requests from outside (the HTTP ingress): on shutdown they stop first and answer what
	// they hold while the pipelines still run.
	fronts []Pipeline
	// adminAddr receives the bound admin address once listening (tests bind port 0).
	adminAddr chan string
}

// New builds a service; pipelines are added with Add before Run.
func New(cfg config.Config, log *zap.Logger) (*Service, error) {
	factory, err := kafkaclient.New(cfg.Kafka)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	ready := admin.NewReadiness(ReadyKafka, ReadyTopics)
	base := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cimstream_build_info", Help: "Always 1; the version label names the running build.",
			ConstLabels: prometheus.Labels{"version": Version},
		}, func() float64 { return 1 }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cimstream_ready", Help: "1 when every readiness condition holds (as /readyz answers 200), else 0.",
		}, func() float64 {
			if _, ok := ready.Check(); ok {
				return 1
			}
			return 0
		}),
	}
	budget := stage.NewBudget(cfg.Memory.BudgetBytes)
	base = append(base,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cimstream_memory_budget_used_bytes", Help: "Bytes of fetched and in-flight records held now (memory.budgetBytes bounds it).",
		}, func() float64 { return float64(budget.Used()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cimstream_memory_budget_bytes", Help: "The configured memory budget (memory.budgetBytes; 0 is unbounded).",
		}, func() float64 { return float64(budget.Total()) }),
	)
	reg.MustRegister(base...)
	m := metrics.New(reg)
	stats := kafkaedge.NewStats(reg)
	var channels []string
	for _, w := range cfg.Egress.Webhooks {
		channels = append(channels, w.Channel)
	}
	egress := metrics.NewEgress(reg, channels)
	collectors := append(append(append(base, m.Collectors()...), stats.Collectors()...), egress.Collectors()...)
	return &Service{
		cfg: cfg, log: log, kafka: factory, registry: reg, metrics: m, egress: egress, stats: stats, budget: budget, collectors: collectors,
		ready:     ready,
		adminAddr: make(chan string, 1),
	}, nil
}

// Kafka returns the client factory shared by the pipelines.
func (s *Service) Kafka() *kafkaclient.Factory { return s.kafka }

// MetricNames lists every metric the service exports (for checking dashboards and alerts).
func (s *Service) MetricNames() []string { return metrics.Names(s.collectors...) }

// Metrics is what pipelines report to.
func (s *Service) Metrics() *metrics.Metrics { return s.metrics }

// EgressMetrics is what the webhook channels report to.
func (s *Service) EgressMetrics() *metrics.Egress { return s.egress }

// Stats is where the Kafka clients report.
func (s *Service) Stats() *kafkaedge.Stats { return s.stats }

// Budget bounds the bytes all pipelines hold.
func (s *Service) Budget() *stage.Budget { return s.budget }

// Readiness lets pipelines add their own conditions (group joined, state restored).
func (s *Service) Readiness() *admin.Readiness { return s.ready }

// AdminAddr yields the admin server's bound address once it listens.
func (s *Service) AdminAddr() <-chan string { return s.adminAddr }

// Add registers a pipeline to run.
func (s *Service) Add(p Pipeline) { s.pipelines = append(s.pipelines, p) }

// AddFront registers a front door (the HTTP ingress): it runs beside the pipelines and, on shutdown, is
// stopped and drained before them, so every request it took gets its final answer.
func (s *Service) AddFront(p Pipeline) { s.fronts = append(s.fronts, p) }

// WaitForKafka waits until the brokers answer and every required topic exists, retrying with backoff for
// at most startup.timeout: a process that starts before Kafka, or before the job that creates its topics,
// waits instead of exiting. Readiness holds the last cause meanwhile and each failed attempt is logged with
// it. It returns the last cause when the time is up, or ctx's error when ctx ends first.
func (s *Service) WaitForKafka(ctx context.Context) error {
	timeout := s.cfg.Startup.Timeout
	deadline := time.Now().Add(timeout)
	backoff := retry.Backoff{Min: 500 * time.Millisecond, Max: 10 * time.Second}
	var last error // the cause from the last attempt that was not cut at the deadline
	for attempt := 1; ; attempt++ {
		// An attempt against an address that swallows packets would last kafka.requestTimeout (and more,
		// for the topics): it gets only the time left.
		actx, cancel := context.WithDeadline(ctx, deadline)
		err := s.reachable(actx)
		cut := errors.Is(actx.Err(), context.DeadlineExceeded)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !cut || last == nil {
			last = err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("not ready within startup.timeout (%v, %d attempts): %w", timeout, attempt, last)
		}
		wait := min(backoff.Next(), left)
		s.log.Warn("kafka not ready yet; retrying", zap.Int("attempt", attempt), zap.Duration("retryIn", wait),
			zap.Duration("startupTimeLeft", left.Round(time.Second)), zap.Error(err))
		if !retry.Sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

// reachable is one start-up attempt: the brokers answer a metadata request and no required topic is missing.
func (s *Service) reachable(ctx context.Context) error {
	if _, err := s.kafka.Ping(ctx); err != nil {
		s.ready.Set(ReadyKafka, err)
		return err
	}
	s.ready.Set(ReadyKafka, nil)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Kafka.RequestTimeout)
	defer cancel()
	if err := topics.Check(ctx, s.kafka.Client(), topics.Required(s.cfg)); err != nil {
		s.ready.Set(ReadyTopics, err)
		return err
	}
	return nil
}

// Preflight connects to the brokers and checks that every topic exists; its errors say what to fix.
func (s *Service) Preflight(ctx context.Context) error {
	if err := s.reachable(ctx); err != nil {
		return err
	}
	return s.checkTopics(ctx)
}

// checkTopics refuses topics that would corrupt session state and warns about other drift; the brokers
// answered and every topic exists (reachable).
func (s *Service) checkTopics(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Kafka.RequestTimeout)
	defer cancel()
	if s.cfg.Inbound.Enabled {
		if err := s.checkState(ctx); err != nil {
			s.ready.Set(ReadyTopics, err)
			return err
		}
	}
	s.ready.Set(ReadyTopics, nil)
	s.warnDrift(ctx)
	return nil
}

// checkState is topics.CheckState, asked again a few times (about 7 s in all) before its answer stands: on
// a cluster, a topic just created reaches the brokers' metadata and configs one after the other, and the
// broker asked first may not know it, or its policy, yet.
func (s *Service) checkState(ctx context.Context) error {
	backoff := retry.Backoff{Min: 500 * time.Millisecond, Max: 2 * time.Second}
	for attempt := 1; ; attempt++ {
		err := topics.CheckState(ctx, s.kafka.Client(), s.cfg.Topics.Sessions, s.cfg.Topics.Repartition)
		if err == nil || attempt == 4 || ctx.Err() != nil {
			return err
		}
		s.log.Warn("session state topics not confirmed yet; asking again", zap.Int("attempt", attempt), zap.Error(err))
		if !backoff.Wait(ctx) {
			return err
		}
	}
}

// warnDrift logs a warning for every topic setting that differs from the configuration; those that would
// corrupt state were refused by CheckState already.
func (s *Service) warnDrift(ctx context.Context) {
	reports, err := topics.Describe(ctx, s.kafka.Client(), topics.Required(s.cfg), s.cfg.Inbound.MaxMessageBytes)
	if err != nil {
		s.log.Warn("could not compare the topics with the configuration", zap.Error(err))
		return
	}
	for _, r := range reports {
		for _, d := range r.Differences {
			s.log.Warn("topic differs from the configuration (see cimstream topics check)", zap.String("topic", d.Topic),
				zap.String("setting", d.Setting), zap.String("have", d.Have), zap.String("configured", d.Want))
		}
	}
}

// watchBrokers keeps the kafka readiness condition current: brokers that stop answering make /readyz
// fail until they answer again.
func (s *Service) watchBrokers(ctx context.Context) {
	retry.Every(ctx, 10*time.Second, func() bool {
		_, err := s.kafka.Ping(ctx)
		if ctx.Err() != nil {
			return false
		}
		s.ready.Set(ReadyKafka, err)
		return true
	})
}

// Run serves the admin endpoints, checks Kafka and the topics, runs the pipelines until ctx is
// cancelled, then drains them within the shutdown budget.
func (s *Service) Run(ctx context.Context) error {
	srv, err := admin.Listen(s.cfg.Admin.Address, s.cfg.Admin.ReadHeaderTimeout, admin.Handler(s.ready, s.registry))
	if err != nil {
		return fmt.Errorf("admin.address %s: %w", s.cfg.Admin.Address, err)
	}
	s.adminAddr <- srv.Addr()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve() }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	s.log.Info("admin server listening", zap.String("address", srv.Addr()))

	if err := s.WaitForKafka(ctx); err != nil {
		if ctx.Err() != nil {
			s.log.Info("stopped while waiting for kafka")
			return nil
		}
		return err
	}
	if err := s.checkTopics(ctx); err != nil {
		return err
	}
	s.log.Info("connected to kafka", zap.Strings("brokers", s.cfg.Kafka.Brokers))
	go s.watchBrokers(ctx)

	// Pipelines get their own context: on shutdown they are cancelled and given the budget to drain.
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, len(s.pipelines))
	for _, p := range s.pipelines {
		go func(p Pipeline) {
			err := p.Run(runCtx)
			if err != nil {
				err = fmt.Errorf("%s pipeline: %w", p.Name(), err)
			}
			done <- err
		}(p)
	}
	frontCtx, stopFronts := context.WithCancel(context.Background())
	defer stopFronts()
	frontDone := make(chan error, len(s.fronts))
	for _, p := range s.fronts {
		go func(p Pipeline) {
			err := p.Run(frontCtx)
			if err != nil {
				err = fmt.Errorf("%s: %w", p.Name(), err)
			}
			frontDone <- err
		}(p)
	}
	running, fronts := len(s.pipelines), len(s.fronts)
	var firstErr error
	select {
	case <-ctx.Done():
		s.log.Info("shutting down", zap.Duration("budget", s.cfg.Shutdown.Timeout))
	case err := <-serveErr:
		firstErr = fmt.Errorf("admin server: %w", err)
	case err := <-done:
		running--
		firstErr = err
		if err == nil {
			firstErr = errors.New("a pipeline stopped unexpectedly")
		}
	case err := <-frontDone:
		fronts--
		firstErr = err
		if err == nil {
			firstErr = errors.New("a front door stopped unexpectedly")
		}
	}
	budget := time.NewTimer(s.cfg.Shutdown.Timeout)
	defer budget.Stop()
	// Fronts first: no new request is taken, and those in flight are answered while the pipelines run. They
	// get the budget less a reserve: a front that overruns it is left behind, and the pipelines are still
	// cancelled and given the reserve to drain and commit.
	frontBudget := time.NewTimer(s.cfg.Shutdown.FrontBudget())
	defer frontBudget.Stop()
	stopFronts()
fronts:
	for fronts > 0 {
		select {
		case err := <-frontDone:
			fronts--
			if err != nil && firstErr == nil {
				firstErr = err
			}
		case <-frontBudget.C:
			err := fmt.Errorf("%d front door(s) still answering requests after %v of the shutdown budget; stopping the pipelines anyway",
				fronts, s.cfg.Shutdown.FrontBudget())
			s.log.Error("shutdown", zap.Error(err))
			if firstErr == nil {
				firstErr = err
			}
			break fronts
		}
	}
	stop()
	for running > 0 {
		select {
		case err := <-done:
			running--
			if err != nil && firstErr == nil && !errors.Is(err, context.Canceled) {
				firstErr = err
			}
		case <-budget.C:
			return fmt.Errorf("shutdown budget of %v exceeded with %d pipeline(s) still draining", s.cfg.Shutdown.Timeout, running)
		}
	}
	return firstErr
}
