package service_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/cimstream/cimstream/internal/kafkaedge/topics"
	"github.com/cimstream/cimstream/internal/kafkatest"
	"github.com/cimstream/cimstream/internal/service"
)

func TestMain(m *testing.M) { os.Exit(kafkatest.Main(m)) }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestIntegrationRunServesHealthAndStopsCleanly(t *testing.T) {
	cfg := kafkatest.Config(t)
	kafkatest.CreateRequired(t, cfg)

	svc, err := service.New(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	addr := <-svc.AdminAddr()

	if code, _ := get(t, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d", code)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := get(t, "http://"+addr+"/readyz")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d: %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, body := get(t, "http://"+addr+"/metrics"); !strings.Contains(body, "cimstream_build_info") {
		t.Fatalf("/metrics lacks cimstream_build_info")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("clean shutdown returned %v", err)
		}
	case <-time.After(cfg.Shutdown.Timeout + 5*time.Second):
		t.Fatal("Run did not return after cancellation")
	}
}

func TestIntegrationRunRefusesMissingTopics(t *testing.T) {
	cfg := kafkatest.Config(t) // topics are not created
	cfg.Startup.Timeout = 2 * time.Second
	svc, err := service.New(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	err = svc.Run(ctx)
	if time.Since(start) > 20*time.Second {
		t.Errorf("gave up after %v; startup.timeout is 2s", time.Since(start))
	}
	if !errors.Is(err, topics.ErrMissing) || !strings.Contains(err.Error(), cfg.Topics.DeadLetter) ||
		!strings.Contains(err.Error(), "cimstream topics create") {
		t.Fatalf("want a missing-topics error naming %s and the fix, got %v", cfg.Topics.DeadLetter, err)
	}
}

func TestIntegrationWrongBrokerAddressSaysWhatToFix(t *testing.T) {
	cfg := kafkatest.Config(t)
	cfg.Kafka.Brokers = []string{"127.0.0.1:1"}
	svc, err := service.New(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	err = svc.Preflight(context.Background())
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") || !strings.Contains(err.Error(), "kafka.brokers") {
		t.Fatalf("want an error naming the address and kafka.brokers, got %v", err)
	}
}

// orderPipeline records when it was told to stop and when it returned.
type orderPipeline struct {
	name    string
	linger  time.Duration
	events  chan<- string
	started chan struct{}
}

func (p *orderPipeline) Name() string { return p.name }

func (p *orderPipeline) Run(ctx context.Context) error {
	close(p.started)
	<-ctx.Done()
	p.events <- p.name + " cancelled"
	time.Sleep(p.linger) // answering what it holds
	p.events <- p.name + " returned"
	return nil
}

// TestIntegrationFrontsStopBeforePipelines: on shutdown the front door (the HTTP ingress) is stopped and
// drained first; the pipelines are cancelled only once it returned, so a request in flight still finds
// its producer and the pipelines running.
func TestIntegrationFrontsStopBeforePipelines(t *testing.T) {
	cfg := kafkatest.Config(t)
	kafkatest.CreateRequired(t, cfg)
	svc, err := service.New(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan string, 8)
	front := &orderPipeline{name: "front", linger: 300 * time.Millisecond, events: events, started: make(chan struct{})}
	pipe := &orderPipeline{name: "pipeline", events: events, started: make(chan struct{})}
	svc.Add(pipe)
	svc.AddFront(front)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	for _, p := range []*orderPipeline{front, pipe} {
		select {
		case <-p.started:
		case <-time.After(60 * time.Second):
			t.Fatalf("%s not started", p.name)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(events)
	var got []string
	for e := range events {
		got = append(got, e)
	}
	want := "front cancelled,front returned,pipeline cancelled,pipeline returned"
	if strings.Join(got, ",") != want {
		t.Errorf("shutdown order %v, want %s", got, want)
	}
}

// stuckFront ignores cancellation, as an ingress would with a request it cannot finish.
type stuckFront struct{ started chan struct{} }

func (stuckFront) Name() string { return "stuck front" }

func (f stuckFront) Run(context.Context) error {
	close(f.started)
	select {}
}

// TestIntegrationPipelinesDrainWhenAFrontOverruns: a front door that does not stop within the budget less
// the pipelines' reserve is left behind; the pipelines are still cancelled and waited for, and Run reports it.
func TestIntegrationPipelinesDrainWhenAFrontOverruns(t *testing.T) {
	cfg := kafkatest.Config(t)
	cfg.Shutdown.Timeout = 2 * time.Second
	kafkatest.CreateRequired(t, cfg)
	svc, err := service.New(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan string, 8)
	front := stuckFront{started: make(chan struct{})}
	pipe := &orderPipeline{name: "pipeline", linger: 100 * time.Millisecond, events: events, started: make(chan struct{})}
	svc.Add(pipe)
	svc.AddFront(front)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	for _, started := range []chan struct{}{front.started, pipe.started} {
		select {
		case <-started:
		case <-time.After(60 * time.Second):
			t.Fatal("not started")
		}
	}
	start := time.Now()
	cancel()
	err = <-done
	if err == nil || !strings.Contains(err.Error(), "front door") {
		t.Errorf("Run: %v, want an error naming the front door", err)
	}
	if took := time.Since(start); took > cfg.Shutdown.Timeout+time.Second {
		t.Errorf("Run returned after %v, shutdown.timeout %v", took, cfg.Shutdown.Timeout)
	}
	close(events)
	var got []string
	for e := range events {
		got = append(got, e)
	}
	if strings.Join(got, ",") != "pipeline cancelled,pipeline returned" {
		t.Errorf("pipeline events %v: it must be cancelled and drained after the front overran", got)
	}
}
