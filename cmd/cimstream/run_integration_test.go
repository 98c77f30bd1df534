package main

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/kafkatest"
)

func TestMain(m *testing.M) { os.Exit(kafkatest.Main(m)) }

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cimstream")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
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

// TestIntegrationBinaryRunReadyAndSIGTERM is the foundation's acceptance: the real binary connects,
// answers /readyz with 200, and exits 0 on SIGTERM.
func TestIntegrationBinaryRunReadyAndSIGTERM(t *testing.T) {
	cfg := kafkatest.Config(t)
	kafkatest.CreateRequired(t, cfg)
	bin := buildBinary(t)
	admin := freeAddr(t)
	var stderr bytes.Buffer
	cfg.Admin.Address = admin
	text, err := cfg.YAML() // every key, so the binary sees this test's topics and group
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", writeTemp(t, string(text)))
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never answered 200; stderr:\n%s", stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatal("no exit within 40 s of SIGTERM")
	}
}

func TestIntegrationBinaryErrorsSayWhatToFix(t *testing.T) {
	cfg := kafkatest.Config(t)
	bin := buildBinary(t)
	cases := map[string]struct {
		args []string
		want []string
	}{
		"wrong broker": {[]string{"run", "--brokers", "127.0.0.1:1", "--set", "admin.address=" + freeAddr(t), "--set", "startup.timeout=1s"},
			[]string{"127.0.0.1:1", "kafka.brokers", "startup.timeout"}},
		"missing topic": {[]string{"run", "--brokers", strings.Join(cfg.Kafka.Brokers, ","), "--set", "admin.address=" + freeAddr(t),
			"--set", "topics.deadLetter=" + cfg.Topics.DeadLetter, "--set", "startup.timeout=1s"}, []string{cfg.Topics.DeadLetter, "cimstream topics create"}},
		"malformed config": {[]string{"run", "--config", writeTemp(t, "kafka: [\n")}, []string{"config file", "line 1"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var stderr bytes.Buffer
			cmd := exec.Command(bin, c.args...)
			cmd.Stderr = &stderr
			err := cmd.Run()
			if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 1 {
				t.Fatalf("want exit 1, got %v", err)
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "cimstream: ") {
				t.Fatalf("last stderr line is not the error: %q", last)
			}
			for _, w := range c.want {
				if !strings.Contains(last, w) {
					t.Errorf("error %q does not mention %q", last, w)
				}
			}
		})
	}
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSecretsNeverPrinted: the SASL password from the environment or a file appears neither in the
// startup log, nor in errors, nor in `config print`.
func TestSecretsNeverPrinted(t *testing.T) {
	bin := buildBinary(t)
	secretFile := writeTemp(t, "from-a-file-s3cret\n")
	for name, env := range map[string][]string{
		"environment": {"CIMSTREAM_KAFKA_SASL_PASSWORD=from-env-s3cret"},
		"file":        {"CIMSTREAM_KAFKA_SASL_PASSWORD_FILE=" + secretFile},
	} {
		t.Run(name, func(t *testing.T) {
			env := append(append(os.Environ(), env...), "CIMSTREAM_KAFKA_SASL_MECHANISM=scram-sha-512", "CIMSTREAM_KAFKA_SASL_USERNAME=alice")
			for _, args := range [][]string{
				{"run", "--brokers", "127.0.0.1:1", "--set", "admin.address=" + freeAddr(t), "--set", "startup.timeout=1s"},
				{"config", "print"},
			} {
				cmd := exec.Command(bin, args...)
				cmd.Env = env
				out, _ := cmd.CombinedOutput()
				if strings.Contains(string(out), "s3cret") {
					t.Fatalf("%v printed the password:\n%s", args, out)
				}
				if !strings.Contains(string(out), "********") {
					t.Errorf("%v should show the password masked:\n%s", args, out)
				}
			}
		})
	}
}
