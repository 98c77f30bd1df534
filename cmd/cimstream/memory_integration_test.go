package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

// TestIntegrationMemoryBudgetHoldsForLargeRecords: a backlog of 600 records of 200 KiB (120 MiB) over
// 12 partitions, processed by the real binary with memory.budgetBytes = 32 MiB. Every record reaches the
// CCM topic, and the process's peak RSS (VmHWM) stays within the budget plus a stated margin for the
// Go runtime, the clients' buffers and garbage not yet collected. The measured peak is printed; only a
// generous bound is asserted (speed and memory are measured in benchmarks, not timed tests).
func TestIntegrationMemoryBudgetHoldsForLargeRecords(t *testing.T) {
	const (
		records    = 600
		valueBytes = 200 << 10
		budget     = 32 << 20
		margin     = 224 << 20
	)
	cfg := kafkatest.Config(t)
	cfg.Topics.Partitions = 12
	cfg.Outbound.Enabled = false
	cfg.Memory.BudgetBytes = budget
	cfg.Topics.InboundChannels = []string{kafkatest.InboundTopic(cfg, "big")}
	kafkatest.CreateRequired(t, cfg)
	topic := cfg.Topics.InboundChannels[0]

	w := &kafka.Writer{Addr: kafka.TCP(kafkatest.Brokers(t)...), Topic: topic, RequiredAcks: kafka.RequireAll,
		Balancer: &kafka.Hash{}, BatchBytes: 900 << 10, BatchSize: 4, BatchTimeout: time.Millisecond,
		Transport: &kafka.Transport{MetadataTTL: 100 * time.Millisecond}}
	text := strings.Repeat("m", valueBytes-300)
	var batch []kafka.Message
	for i := range records {
		customer := "c" + strconv.Itoa(i%60)
		batch = append(batch, kafka.Message{Key: []byte(customer), Value: fmt.Appendf(nil,
			`{"header":{"sender":{"id":"w","type":"CONNECTOR","senderName":"W"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":%q}},"body":{"type":"PLAIN","markdownText":"%d %s"}}`,
			customer, i, text)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for start := 0; start < len(batch); start += 50 {
		if err := w.WriteMessages(ctx, batch[start:min(start+50, len(batch))]...); err != nil {
			t.Fatalf("produce the backlog: %v", err)
		}
	}
	_ = w.Close()

	bin := buildBinary(t)
	cfg.Admin.Address = freeAddr(t)
	yaml, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "run", "--config", writeTemp(t, string(yaml)), "--set", "log.level=warn")
	cmd.Stderr = &stderr
	cmd.Env = append(os.Environ(), "GOMEMLIMIT=off")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	f := kafkatest.Factory(t)
	began := time.Now()
	deadline := began.Add(3 * time.Minute)
	for {
		lags, err := kafkaedge.GroupLag(ctx, f, kafkatest.Name(t, "counter"), []string{cfg.Topics.CCMInbound})
		n := int64(0)
		for _, l := range lags {
			n += l.Lag
		}
		if err == nil && n >= records {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d records on the CCM topic after 3 min; stderr:\n%s", n, records, stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	peak := peakRSS(t, cmd.Process.Pid)
	t.Logf("backlog of %d × %d KiB over 12 partitions: %.1f s, peak RSS %.0f MiB (budget %d MiB, bound %d MiB)",
		records, valueBytes>>10, time.Since(began).Seconds(), float64(peak)/(1<<20), budget>>20, (budget+margin)>>20)
	if peak > budget+margin {
		t.Fatalf("peak RSS %d MiB exceeds the budget (%d MiB) plus the margin (%d MiB)", peak>>20, budget>>20, margin>>20)
	}
}

// peakRSS is the process's peak resident set size (VmHWM) in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}
