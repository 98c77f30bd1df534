package main

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/kafkatest"
)

// readyz returns /readyz's status and body, or 0 when nothing answers.
func readyz(admin string) (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + admin + "/readyz")
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestStartupGivesUpAfterTimeoutWithTheCause: with no broker at all, run retries (a log line per attempt
// with the cause, /readyz 503 naming kafka), then exits 1 after startup.timeout with the cause; no
// developer hint in run's error.
func TestStartupGivesUpAfterTimeoutWithTheCause(t *testing.T) {
	bin := buildBinary(t)
	broker := freeAddr(t) // nothing listens there
	admin := freeAddr(t)
	var stderr syncBuffer
	cmd := exec.Command(bin, "run", "--brokers", broker, "--set", "admin.address="+admin, "--set", "startup.timeout=4s")
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	sawNotReady := false
	for i := 0; i < 40 && !sawNotReady; i++ {
		if code, body := readyz(admin); code == http.StatusServiceUnavailable && strings.Contains(body, "kafka") {
			sawNotReady = true
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !sawNotReady {
		t.Error("/readyz never answered 503 naming kafka while waiting")
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30 s after start with startup.timeout=4s\n%s", stderr.String())
	}
	elapsed := time.Since(start)
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 1 {
		t.Fatalf("want exit 1, got %v", err)
	}
	if elapsed < 4*time.Second {
		t.Errorf("gave up after %v, before startup.timeout", elapsed)
	}
	out := stderr.String()
	if n := strings.Count(out, "kafka not ready yet; retrying"); n < 3 {
		t.Errorf("%d attempt lines, want one per attempt (at least 3 in 4 s):\n%s", n, out)
	}
	if !strings.Contains(out, `"attempt":1`) || !strings.Contains(out, "connection refused") {
		t.Errorf("attempt lines must carry the attempt and the cause:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	for _, want := range []string{"cimstream: ", "startup.timeout (4s", broker, "connection refused", "kafka.brokers"} {
		if !strings.Contains(last, want) {
			t.Errorf("final error %q lacks %q", last, want)
		}
	}
	if strings.Contains(out, "make kafka-up") {
		t.Errorf("run must not give the developer hint:\n%s", out)
	}
}

// TestIntegrationStartupWaitsForLateBroker: run started 10 s before its Apache Kafka broker (and before
// its topics exist) waits, answers /readyz 503 meanwhile, and is ready once the broker is up and the topics
// are created; SIGTERM then stops it cleanly.
func TestIntegrationStartupWaitsForLateBroker(t *testing.T) {
	kafkatest.Brokers(t) // the shared broker's availability decides skip or fail, as for every integration test
	bin := buildBinary(t)
	port := kafkatest.FreePort(t)
	cfg := kafkatest.Config(t)
	cfg.Kafka.Brokers = []string{fmt.Sprintf("127.0.0.1:%d", port)}
	cfg.Admin.Address = freeAddr(t)
	cfg.Startup.Timeout = 3 * time.Minute
	text, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd := exec.Command(bin, "run", "--config", writeTemp(t, string(text)))
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	time.Sleep(10 * time.Second)
	select {
	case err := <-done:
		t.Fatalf("run exited before the broker came: %v\n%s", err, stderr.String())
	default:
	}
	if code, body := readyz(cfg.Admin.Address); code != http.StatusServiceUnavailable || !strings.Contains(body, "kafka") {
		t.Fatalf("before the broker: /readyz %d %s", code, body)
	}
	kafkatest.StartBroker(t, kafkatest.BrokerOptions{Port: port})
	kafkatest.CreateRequired(t, cfg)

	ready := false
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline) && !ready; time.Sleep(200 * time.Millisecond) {
		code, _ := readyz(cfg.Admin.Address)
		ready = code == http.StatusOK
	}
	if !ready {
		t.Fatalf("/readyz never answered 200 after the broker came up\n%s", stderr.String())
	}
	if n := strings.Count(stderr.String(), "kafka not ready yet; retrying"); n < 2 {
		t.Errorf("%d attempt lines logged while waiting", n)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatal("no exit within 40 s of SIGTERM")
	}
}
