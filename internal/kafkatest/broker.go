package kafkatest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Broker is an Apache Kafka broker of a test's own, started with scripts/kafka.sh, for tests that stop
// and start the broker or need listeners the shared one lacks (SASL_SSL).
type Broker struct {
	Addr string
	port int
	env  []string
}

// BrokerOptions configure an own broker. Env returns extra environment for scripts/kafka.sh
// (KAFKA_EXTRA_PROPS, KAFKA_LISTENERS, KAFKA_FORMAT_ARGS, ...), given the broker's PLAINTEXT port.
type BrokerOptions struct {
	Env func(port int) map[string]string
	// Port is the PLAINTEXT port; 0 picks a free one.
	Port int
}

// FreePort returns a port free on 127.0.0.1 now.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// StartBroker starts a broker on a free port and stops it (wiping its data) when the test ends. It needs
// Java; the jars come from the same cache as the shared broker's.
func StartBroker(t testing.TB, opts BrokerOptions) *Broker {
	t.Helper()
	port := opts.Port
	if port == 0 {
		port = FreePort(t)
	}
	b := &Broker{port: port, env: append(os.Environ(), fmt.Sprintf("KAFKA_PORT=%d", port),
		fmt.Sprintf("KAFKA_CONTROLLER_PORT=%d", FreePort(t)), "KAFKA_HEAP=-Xmx512m")}
	if opts.Env != nil {
		for k, v := range opts.Env(port) {
			b.env = append(b.env, k+"="+v)
		}
	}
	out := b.script(t, "up")
	b.Addr = strings.TrimSpace(lastLine(out))
	t.Cleanup(func() { b.script(t, "down") })
	return b
}

// Stop stops the broker and keeps its data.
func (b *Broker) Stop(t testing.TB) { b.script(t, "stop") }

// Start starts a stopped broker again on its data.
func (b *Broker) Start(t testing.TB) { b.script(t, "start") }

func (b *Broker) script(t testing.TB, verb string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(RepoRoot(t), "scripts", "kafka.sh"), verb)
	cmd.Env = b.env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kafka.sh %s: %v\n%s", verb, err, stderr.String())
	}
	return string(out)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// RepoRoot is the directory holding go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}
