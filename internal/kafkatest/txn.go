package kafkatest

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TxnProducer is a connector writing with the official Java client's transactions (as Kafka Connect's
// exactly-once source connectors do): testdata/TxnProducer.java, compiled once against the jars
// scripts/kafka.sh fetches and driven line by line. kafka-go has no transactional producer, so this is
// the only way a test gets real commit and abort markers and aborted records on a topic.
type TxnProducer struct {
	t     testing.TB
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Scanner
	stder *strings.Builder
	mu    sync.Mutex
}

// NewTxnProducer starts a transactional producer with a unique transactional id on the test broker; it
// is closed when the test ends (a transaction still open is then left to the broker's timeout).
func NewTxnProducer(t testing.TB) *TxnProducer {
	t.Helper()
	return NewTxnProducerTo(t, Brokers(t))
}

// NewTxnProducerTo is NewTxnProducer on the given brokers.
func NewTxnProducerTo(t testing.TB, brokers []string) *TxnProducer {
	t.Helper()
	libs, classes := txnProducerClasses(t)
	cmd := exec.Command("java", "-Xmx256m", "-cp", classes+string(os.PathListSeparator)+filepath.Join(libs, "*"),
		"-Dlog4j2.configurationFile="+filepath.Join(RepoRoot(t), "scripts", "kafka", "log4j2-tools.properties"),
		"TxnProducer", strings.Join(brokers, ","), Name(t, "txn"))
	p := &TxnProducer{t: t, cmd: cmd, stder: &strings.Builder{}}
	var err error
	if p.in, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = p.stder
	p.out = bufio.NewScanner(stdout)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the Java transactional producer: %v", err)
	}
	t.Cleanup(p.Close)
	p.answer("initTransactions")
	return p
}

// Begin begins a transaction.
func (p *TxnProducer) Begin() { p.t.Helper(); p.do("begin") }

// Send writes one record in the open transaction and returns its offset.
func (p *TxnProducer) Send(topic string, partition int, key, value string) int64 {
	p.t.Helper()
	if strings.ContainsAny(key+value, "\t\n") {
		p.t.Fatalf("TxnProducer: key and value must not hold tabs or newlines")
	}
	reply := p.do(strings.Join([]string{"send", topic, strconv.Itoa(partition), key, value}, "\t"))
	off, err := strconv.ParseInt(reply, 10, 64)
	if err != nil {
		p.t.Fatalf("TxnProducer: send answered %q", reply)
	}
	return off
}

// Commit commits the open transaction.
func (p *TxnProducer) Commit() { p.t.Helper(); p.do("commit") }

// Abort aborts the open transaction.
func (p *TxnProducer) Abort() { p.t.Helper(); p.do("abort") }

// Close ends the producer process.
func (p *TxnProducer) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.in == nil {
		return
	}
	_ = p.in.Close()
	p.in = nil
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

func (p *TxnProducer) do(line string) string {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.in == nil {
		p.t.Fatal("TxnProducer: closed")
	}
	if _, err := io.WriteString(p.in, line+"\n"); err != nil {
		p.t.Fatalf("TxnProducer: write %q: %v\n%s", line, err, p.stder)
	}
	return p.answer(line)
}

// answer reads the reply to one command: "ok [value]" or "err message".
func (p *TxnProducer) answer(what string) string {
	p.t.Helper()
	if !p.out.Scan() {
		p.t.Fatalf("TxnProducer: no answer to %q (%v); stderr:\n%s", what, p.out.Err(), p.stder)
	}
	reply := p.out.Text()
	if rest, ok := strings.CutPrefix(reply, "ok"); ok {
		return strings.TrimSpace(rest)
	}
	p.t.Fatalf("TxnProducer: %q answered %q; stderr:\n%s", what, reply, p.stder)
	return ""
}

var compileMu sync.Mutex

// txnProducerClasses returns the Kafka jars' directory and a directory with TxnProducer.class compiled
// from testdata (cached under .cache by the source's hash; the jars fetched by scripts/kafka.sh if needed).
func txnProducerClasses(t testing.TB) (libs, classes string) {
	t.Helper()
	compileMu.Lock()
	defer compileMu.Unlock()
	root := RepoRoot(t)
	home := os.Getenv("CIMSTREAM_KAFKA_HOME")
	if home == "" {
		home = filepath.Join(root, ".cache", "kafka")
	}
	libs = filepath.Join(home, "libs")
	if _, err := os.Stat(filepath.Join(libs, ".complete")); err != nil {
		cmd := exec.Command(filepath.Join(root, "scripts", "kafka.sh"), "fetch")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kafka.sh fetch: %v\n%s", err, out)
		}
	}
	src := filepath.Join(root, "internal", "kafkatest", "testdata", "TxnProducer.java")
	body, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	classes = filepath.Join(root, ".cache", "kafkatest", "txnproducer-"+hex.EncodeToString(sum[:8]))
	if _, err := os.Stat(filepath.Join(classes, "TxnProducer.class")); err == nil {
		return libs, classes
	}
	tmp, err := os.MkdirTemp(filepath.Join(root, ".cache"), "txnproducer-build-")
	if err != nil {
		if err = os.MkdirAll(filepath.Join(root, ".cache"), 0o755); err == nil {
			tmp, err = os.MkdirTemp(filepath.Join(root, ".cache"), "txnproducer-build-")
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("javac", "-nowarn", "-d", tmp, "-cp", filepath.Join(libs, "*"), src)
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(tmp)
		t.Fatalf("javac TxnProducer.java (needs a JDK 17): %v\n%s", err, out)
	}
	if err := os.MkdirAll(filepath.Dir(classes), 0o755); err != nil {
		t.Fatal(err)
	}
	// Renamed into place whole, so a concurrent test binary never sees a half-written class.
	if err := os.Rename(tmp, classes); err != nil {
		_ = os.RemoveAll(tmp)
		if _, serr := os.Stat(filepath.Join(classes, "TxnProducer.class")); serr != nil {
			t.Fatal(fmt.Errorf("install compiled TxnProducer: %w", err))
		}
	}
	return libs, classes
}
