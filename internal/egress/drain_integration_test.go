package egress_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/cimstream/cimstream/internal/egress"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

// startStoppable runs the egress pipeline until the returned stop is called; it returns once ready says so.
func startStoppable(t *testing.T, p *egress.Pipeline, ready func() bool) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Run(ctx); close(done) }()
	for deadline := time.Now().Add(45 * time.Second); !ready(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("egress not ready")
		}
	}
	return func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("egress did not stop in 30 s")
		}
	}
}

// TestIntegrationEgressStopDrainsAPostInFlight: a stop (SIGTERM) while a POST is in flight lets it finish,
// records its answer and commits it: the next run does not send it again. The connector's 200 with a
// notification shows the outcome was recorded.
func TestIntegrationEgressStopDrainsAPostInFlight(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	c := newConnector(t, func(r request, attempt int) (int, string) {
		if r.ID == "slow-1" && r.Run == 0 {
			entered <- struct{}{}
			<-release
		}
		return 200, connectorNote(r.ID)
	})
	cfg := setup(t, c, 1)
	f, err := kafkaclient.New(cfg.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	ready := false
	isReady := func() bool { mu.Lock(); defer mu.Unlock(); return ready }
	pipeline := func() *egress.Pipeline {
		mu.Lock()
		ready = false
		mu.Unlock()
		return egress.NewPipeline(cfg, f, zaptest.NewLogger(t), egress.Observers{Ready: func(_ string, err error) {
			mu.Lock()
			ready = err == nil
			mu.Unlock()
		}})
	}
	stop := startStoppable(t, pipeline(), isReady)
	kafkatest.KcatProduce(t, topic(cfg), true, msg("fast-1", "ann", "a"), msg("slow-1", "bob", "b"))
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("slow-1 never reached the connector")
	}
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	time.Sleep(200 * time.Millisecond) // the stop is under way while the POST is still open
	close(release)
	<-stopped

	c.run.Store(1)
	stop2 := startStoppable(t, pipeline(), isReady)
	defer stop2()
	kafkatest.KcatProduce(t, topic(cfg), true, msg("after-1", "cyd", "c"))
	c.waitFor(t, "the second run's message", 30*time.Second, func(rs []request) bool {
		for _, r := range rs {
			if r.ID == "after-1" {
				return true
			}
		}
		return false
	})
	for _, r := range c.requests() {
		if r.Run == 1 && r.ID != "after-1" {
			t.Errorf("%s sent again after a graceful stop", r.ID)
		}
	}
	got := notes(t, kafkatest.KcatConsume(t, cfg.Topics.Notifications, kafkatest.AtLeast(3)))
	for _, id := range []string{"fast-1", "slow-1", "after-1"} {
		if n := got[id]; !strings.HasPrefix(fmt.Sprint(n.Body.Status), "DELIVERED") {
			t.Errorf("notification of %s: %+v", id, n)
		}
	}
}
