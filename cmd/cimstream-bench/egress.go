package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/loadgen"
	"github.com/cimstream/cimstream/pkg/cim"
)

// connector is a local webhook connector answering 202 to every POST; it counts distinct deliveries
// (X-Cimstream-Delivery, or the body for the baseline) so a duplicate after a retry is not counted twice.
type connector struct {
	delay time.Duration // before each answer: a connector doing real work
	srv   *http.Server
	url   string
	mu    sync.Mutex
	seen  map[string]bool
	count atomic.Int64
	first time.Time // the first delivery since the last reset
}

func startConnector(delay time.Duration) (*connector, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &connector{delay: delay, seen: map[string]bool{}, url: "http://" + ln.Addr().String() + "/hook"}
	c.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if c.delay > 0 {
			time.Sleep(c.delay)
		}
		id := r.Header.Get("X-Cimstream-Delivery")
		if id == "" {
			id = string(body)
		}
		c.mu.Lock()
		if c.first.IsZero() {
			c.first = time.Now()
		}
		if !c.seen[id] {
			c.seen[id] = true
			c.count.Add(1)
		}
		c.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})}
	go func() { _ = c.srv.Serve(ln) }()
	return c, nil
}

func (c *connector) reset() {
	c.mu.Lock()
	c.seen = map[string]bool{}
	c.first = time.Time{}
	c.count.Store(0)
	c.mu.Unlock()
}

func (c *connector) firstAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.first
}

func (c *connector) wait(want int, limit time.Duration) (time.Time, error) {
	deadline := time.Now().Add(limit)
	for c.count.Load() < int64(want) {
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("connector: %d of %d deliveries after %v", c.count.Load(), want, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Now(), nil
}

// egressBench preloads one webhook channel's topic and times, against the same local connector answering
// 202 after delay: the baseline (one loop reading the partitions in turn and POSTing each record, one at a
// time), then the cimstream binary's webhook egress until every record was delivered.
func egressBench(base config.Config, factory *kafkaclient.Factory, prefix string, n int, delay time.Duration) (baseline, egress Figure, err error) {
	conn, err := startConnector(delay)
	if err != nil {
		return
	}
	defer conn.srv.Close()
	cfg := base
	setTopics(&cfg, prefix+"eg.")
	cfg.Inbound.Enabled, cfg.Outbound.Enabled = false, false
	secret := filepath.Join(os.TempDir(), fmt.Sprintf("cimstream-bench-secret-%d", time.Now().UnixNano()))
	if err = os.WriteFile(secret, []byte("bench-secret\n"), 0o600); err != nil {
		return
	}
	defer os.Remove(secret)
	channel := prefix + "eg.web"
	cfg.Egress.Webhooks = []config.Webhook{{Channel: channel, URL: conn.url, SecretFile: secret}}
	if err = createTopics(factory, cfg); err != nil {
		return
	}
	topic := config.OutboundTopic(channel)
	if _, err = produce(factory, loadgen.Options{Direction: cim.Outbound, Topics: []string{topic}, Customers: 5000, Count: n, Size: size, Keyed: true, RunID: "eg"}); err != nil {
		return
	}
	if baseline, err = sequentialPoster(factory, topic, cfg.Topics.Partitions, conn, n); err != nil {
		return
	}
	conn.reset()
	egress, err = runEgress(cfg, conn, n)
	return
}

// sequentialPoster is the baseline: partition readers drained in turn by one loop, each record POSTed and
// its answer read before the next, no signing, no Kafka writes, no commits.
func sequentialPoster(f *kafkaclient.Factory, topic string, partitions int, conn *connector, n int) (Figure, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	total := 0
	for p := 0; p < partitions; p++ {
		r, err := f.PartitionReader(topic, p, -2) // from the first offset
		if err != nil {
			return Figure{}, err
		}
		_, end, err := kafkaedge.Bounds(context.Background(), f, topic, p) // within the client's request timeout
		if err != nil {
			return Figure{}, err
		}
		for off := int64(-1); off < end-1; {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			m, err := r.FetchMessage(ctx)
			cancel()
			if err != nil {
				_ = r.Close()
				return Figure{}, fmt.Errorf("baseline fetch %s/%d: %w", topic, p, err)
			}
			off = m.Offset
			resp, err := client.Post(conn.url, "application/json", bytes.NewReader(m.Value))
			if err != nil {
				_ = r.Close()
				return Figure{}, err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			total++
		}
		_ = r.Close()
	}
	if total != n {
		return Figure{}, fmt.Errorf("baseline posted %d of %d", total, n)
	}
	s := time.Since(conn.firstAt()).Seconds()
	return Figure{Records: n, Seconds: s, PerSecond: float64(n) / s}, nil
}

// runEgress starts the binary with the webhook channel and times it until every record was delivered.
func runEgress(cfg config.Config, conn *connector, n int) (Figure, error) {
	pid, stop, err := startCimstream(cfg, "127.0.0.1:0", os.Stderr)
	if err != nil {
		return Figure{}, err
	}
	defer stop()
	stopRSS := sampleMaxRSS(pid)
	end, err := conn.wait(n, 10*time.Minute)
	maxRSS := stopRSS()
	if err != nil {
		return Figure{}, err
	}
	// From the first delivery: the process start and the group join (seconds, with kafka-go) are not
	// delivery throughput, and the baseline has neither.
	s := end.Sub(conn.firstAt()).Seconds()
	return Figure{Records: n, Seconds: s, PerSecond: float64(n) / s, MaxRSSMiB: maxRSS}, nil
}
