package egress_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/kafkatest"
	"github.com/cimstream/cimstream/internal/stage"
)

// buildBinary builds cmd/cimstream once per test into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cimstream")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(kafkatest.RepoRoot(t), "cmd", "cimstream")).CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// startBinary runs `cimstream run` and waits for /readyz.
func startBinary(t *testing.T, bin, configPath string) *exec.Cmd {
	t.Helper()
	admin := fmt.Sprintf("127.0.0.1:%d", kafkatest.FreePort(t))
	logFile, err := os.CreateTemp(t.TempDir(), "cimstream-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", configPath, "--set", "admin.address="+admin, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get("http://" + admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return cmd
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile.Name())
			t.Fatalf("cimstream not ready; log:\n%s", log)
		}
	}
}

// TestIntegrationEgressSIGKILLLosesNothing: cimstream is killed with SIGKILL mid-delivery and started
// again. Every message reaches the connector (nothing lost); the second run sends again only messages
// that were not settled in the commit when it was killed (at or above the committed offset, and not among
// the settled offsets the commit's metadata names), and each customer's messages are accepted in topic
// order within each run.
func TestIntegrationEgressSIGKILLLosesNothing(t *testing.T) {
	bin := buildBinary(t)
	c := newConnector(t, func(r request, attempt int) (int, string) {
		time.Sleep(10 * time.Millisecond) // slow enough that many messages are still to go at the kill
		if strings.HasSuffix(r.ID, "7") && attempt == 1 {
			return 500, "" // some settle late, so settled records sit above unsettled ones
		}
		if r.ID == "m-0-3" && attempt < 5 {
			return 503, "" // one message retries for seconds: the kill comes while it does
		}
		return 202, ""
	})
	cfg := setup(t, c, 3)
	cfg.Egress.Concurrency = 4
	cfg.Egress.Retry.MinBackoff, cfg.Egress.Retry.MaxBackoff = 300*time.Millisecond, 2*time.Second
	text, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	configPath := filepath.Join(t.TempDir(), "cimstream.yaml")
	if err := os.WriteFile(configPath, text, 0o600); err != nil {
		t.Fatal(err)
	}
	const customers, each = 20, 30
	var lines []string
	for i := 0; i < each; i++ {
		for k := 0; k < customers; k++ {
			lines = append(lines, msg(fmt.Sprintf("m-%d-%d", k, i), fmt.Sprintf("cust-%d", k), strconv.Itoa(i)))
		}
	}
	kafkatest.KcatProduce(t, topic(cfg), true, lines...)

	first := startBinary(t, bin, configPath)
	c.waitFor(t, "m-0-3 retried while others proceed", 60*time.Second, func(rs []request) bool {
		n := 0
		for _, r := range rs {
			if r.ID == "m-0-3" {
				n++
			}
		}
		return n >= 3 && len(rs) >= len(lines)/3
	})
	time.Sleep(3 * cfg.Kafka.Consumer.CommitInterval) // a commit with the settled offsets above m-0-3
	_ = first.Process.Signal(syscall.SIGKILL)
	_, _ = first.Process.Wait()
	c.run.Store(1) // requests arriving from now on come from the second run
	run1 := len(c.requests())
	committed, settled := committedOffsets(t, cfg.Kafka.Consumer.GroupID+".egress."+cfg.Egress.Webhooks[0].Channel, topic(cfg), 3)
	accepted := map[string]bool{}
	for _, r := range c.requests() {
		if r.Status == 202 {
			accepted[r.ID] = true
		}
	}
	if len(accepted) >= len(lines) {
		t.Fatalf("the kill came after all %d messages were accepted; nothing was mid-delivery", len(lines))
	}

	startBinary(t, bin, configPath)
	want := map[string]bool{}
	for i := 0; i < each; i++ {
		for k := 0; k < customers; k++ {
			want[fmt.Sprintf("m-%d-%d", k, i)] = true
		}
	}
	c.waitFor(t, "every message after the restart", 90*time.Second, func(rs []request) bool {
		seen := map[string]bool{}
		for _, r := range rs {
			if r.Status == 202 {
				seen[r.ID] = true
			}
		}
		return len(seen) == len(want)
	})
	all := c.requests()
	for _, r := range all {
		if r.Status != 202 || r.Run == 0 {
			continue
		}
		parts := strings.Split(r.Delivery, "/")
		p, _ := strconv.Atoi(parts[len(parts)-2])
		off, _ := strconv.ParseInt(parts[len(parts)-1], 10, 64)
		if off < committed[p] {
			t.Errorf("%s (partition %d offset %d) sent again after the restart, below the committed offset %d", r.ID, p, off, committed[p])
		}
		if settled[p][off] {
			t.Errorf("%s (partition %d offset %d) sent again after the restart, though the commit names it settled", r.ID, p, off)
		}
	}
	for run := int64(0); run < 2; run++ {
		last := map[string]int{}
		for _, r := range all {
			if r.Status != 202 || r.Run != run {
				continue
			}
			seq, _ := strconv.Atoi(r.Text)
			if prev, ok := last[r.ID[:strings.LastIndex(r.ID, "-")]]; ok && seq <= prev {
				t.Errorf("customer of %s: message %d accepted after %d", r.ID, seq, prev)
			}
			last[r.ID[:strings.LastIndex(r.ID, "-")]] = seq
		}
	}
	dups := 0
	seen := map[string]bool{}
	for _, r := range all {
		if r.Status == 202 {
			if seen[r.ID] {
				dups++
			}
			seen[r.ID] = true
		}
	}
	skipped := 0
	for _, s := range settled {
		skipped += len(s)
	}
	if skipped == 0 {
		t.Error("the commit at the kill names no settled offset above the committed one, though m-0-3 was retrying")
	}
	t.Logf("%d messages, %d requests before the kill, %d duplicates after it, committed at the kill %v with %d settled above",
		len(lines), run1, dups, committed, skipped)
}

// committedOffsets reads the group's committed offsets (-1 for none) and the settled offsets above each
// that the commit's metadata names.
func committedOffsets(t *testing.T, group, topic string, partitions int) (map[int]int64, map[int]map[int64]bool) {
	t.Helper()
	f := kafkatest.Factory(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ps := make([]int, partitions)
	for i := range ps {
		ps[i] = i
	}
	resp, err := f.Client().OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ps}})
	if err != nil {
		t.Fatal(err)
	}
	out, settled := map[int]int64{}, map[int]map[int64]bool{}
	for _, p := range resp.Topics[topic] {
		out[p.Partition] = p.CommittedOffset
		settled[p.Partition] = stage.DecodeSettled(p.CommittedOffset, p.Metadata)
	}
	return out, settled
}
