package ingress_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/kafkatest"
)

// TestIntegrationIngressSIGTERMAnswersEveryRequestInFlight runs the real binary under a stream of requests
// and sends SIGTERM: a request whose body is still arriving at that moment is answered 202 once it is
// complete; every 202'd id is on the topic, every request that got no answer wrote nothing, and the
// process exits 0.
func TestIntegrationIngressSIGTERMAnswersEveryRequestInFlight(t *testing.T) {
	cfg, topic := ingressConfig(t)
	cfg.Ingress.Address = freeAddr(t)
	cfg.Admin.Address = freeAddr(t)
	kafkatest.CreateRequired(t, cfg)
	text, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "cimstream.yaml")
	if err := os.WriteFile(cfgFile, text, 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "cimstream")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/cimstream/cimstream/cmd/cimstream").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "run", "--config", cfgFile, "--log-level", "info")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	url := "http://" + cfg.Ingress.Address + "/cim-messages"
	deadline := time.Now().Add(60 * time.Second)
	for {
		if r, err := postJSON(t, url, message("warmup", "w", "warm")); err == nil && r.code == http.StatusAccepted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ingress did not accept within 60 s\n%s", stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A request in flight for sure: headers and half the body sent before SIGTERM.
	slowBody := message("slow-1", "slow", "sent in two halves")
	conn, err := net.Dial("tcp", cfg.Ingress.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /cim-messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		len(slowBody), slowBody[:len(slowBody)/2])

	// A stream of requests from 16 clients, one connection each request.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	type outcome struct {
		id   string
		code int
		err  error
	}
	var mu sync.Mutex
	var outcomes []outcome
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("load-%d-%d", g, i)
				req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(message(id, fmt.Sprintf("c%d", g), id)))
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				o := outcome{id: id, err: err}
				if err == nil {
					o.code = resp.StatusCode
					resp.Body.Close()
				}
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
				if err != nil {
					return // the listener is closed
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // shutdown has begun: the listener is closed
	if _, err := conn.Write([]byte(slowBody[len(slowBody)/2:])); err != nil {
		t.Fatalf("finishing the in-flight request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("the request in flight at SIGTERM got no answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("the request in flight at SIGTERM: %d, want 202", resp.StatusCode)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(45 * time.Second):
		t.Fatal("no exit within 45 s of SIGTERM")
	}
	close(stop)
	wg.Wait()

	accepted, failed := map[string]bool{"slow-1": true, "warmup": true}, map[string]error{}
	for _, o := range outcomes {
		switch {
		case o.err != nil:
			failed[o.id] = o.err
		case o.code == http.StatusAccepted:
			accepted[o.id] = true
		case o.code != http.StatusServiceUnavailable:
			t.Errorf("%s answered %d", o.id, o.code)
		}
	}
	if len(accepted) < 10 {
		t.Fatalf("only %d requests accepted before shutdown: the test put no load", len(accepted))
	}
	recs := kafkatest.KcatConsume(t, topic, kafkatest.AtLeast(len(accepted)))
	on := map[string]bool{}
	for _, r := range recs {
		var m struct{ ID string }
		_ = json.Unmarshal([]byte(r.Value), &m)
		on[m.ID] = true
	}
	for id := range accepted {
		if !on[id] {
			t.Errorf("%s was answered 202 but is not on the topic", id)
		}
	}
	for id, err := range failed {
		if on[id] {
			t.Errorf("%s was written but its client got no answer: %v", id, err)
		}
	}
	t.Logf("%d accepted, %d refused at the closed listener", len(accepted), len(failed))
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
