package chaos_test

import (
	"bufio"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

// Broker quotas: the same backlog through cimstream twice on the shared broker, once with no quota
// and once with a produce and a fetch byte-rate quota on a client id of the test's own (set with
// Kafka's own ConfigCommand, as an operator would with kafka-configs). Throttled, the service must
// slow down and nothing else: no dead letter, no write error, nothing lost, duplicates byte-identical,
// and the throttle time must show in cimstream_kafka_throttle_seconds_total. Throughput is measured and
// printed, not asserted.

const quotaBytesPerSecond = 64 << 10

// metricSum adds up the samples of a metric whose labels contain every one of labels, from an
// instance's /metrics; -1 when it cannot be read.
func metricSum(in *instance, name string, labels ...string) float64 {
	resp, err := http.Get("http://" + in.admin + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue next
			}
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// kafkaConfigs runs Kafka's ConfigCommand (what kafka-configs.sh runs) against the shared broker.
func kafkaConfigs(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(kafkatest.RepoRoot(t), "scripts", "kafka.sh"), append([]string{"tool", "kafka.admin.ConfigCommand",
		"--bootstrap-server", strings.Join(kafkatest.Brokers(t), ",")}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kafka-configs %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

type quotaRun struct {
	records                  int
	took                     time.Duration
	produceThrottle, fetchTh float64
	writeErrors, retries     float64
	dead                     int
}

func runQuota(t *testing.T, quota bool) quotaRun {
	clientID := kafkatest.Name(t, "client")
	cfg, path := setup(t, kafkatest.Brokers(t), func(c *config.Config) {
		c.Kafka.ClientID = clientID
		c.Inbound.SessionIdleTimeout = sessionsIdle
	})
	if quota {
		rate := strconv.Itoa(quotaBytesPerSecond)
		kafkaConfigs(t, "--alter", "--entity-type", "clients", "--entity-name", clientID,
			"--add-config", "producer_byte_rate="+rate+",consumer_byte_rate="+rate)
		t.Cleanup(func() {
			kafkaConfigs(t, "--alter", "--entity-type", "clients", "--entity-name", clientID,
				"--delete-config", "producer_byte_rate,consumer_byte_rate")
		})
	}
	in := start(t, path)
	// A backlog of 1,200 messages of about 600 bytes, 60 customers.
	f := &feeder{brokers: cfg.Kafka.Brokers, topic: cfg.Topics.InboundChannels[0], customers: 60}
	pad := strings.Repeat("x", 300)
	var lines []string
	for r := 0; r < 20; r++ {
		for c := 0; c < f.customers; c++ {
			text := fmt.Sprintf("c%d-r%d-%s", c, r, pad)
			lines = append(lines, message(c, text))
			f.sent = append(f.sent, text)
		}
	}
	began := time.Now()
	kafkatest.KcatProduceTo(t, f.brokers, f.topic, true, lines...)
	// Until the CCM topic holds every message (and the session events beside them), at most 3 min.
	want := int64(len(lines))
	for deadline := time.Now().Add(3 * time.Minute); ccmCount(t, cfg) < want && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
	}
	res := quotaRun{records: len(lines), took: time.Since(began)}
	account(t, cfg, f.sent, 0)
	res.dead = len(kafkatest.KcatConsumeFrom(t, cfg.Kafka.Brokers, cfg.Topics.DeadLetter, func([]kafkatest.KcatRecord) bool { return true }))
	res.produceThrottle = metricSum(in, "cimstream_kafka_throttle_seconds_total", `request="produce"`)
	res.fetchTh = metricSum(in, "cimstream_kafka_throttle_seconds_total", `request="fetch"`)
	res.writeErrors = metricSum(in, "cimstream_kafka_writer_errors_total")
	res.retries = metricSum(in, "cimstream_write_retries_total")
	if !ready(in) {
		t.Error("/readyz is not 200 after the backlog")
	}
	return res
}

func TestChaosQuotaThrottlesWithoutLoss(t *testing.T) {
	var free, throttled quotaRun
	t.Run("NoQuota", func(t *testing.T) { free = runQuota(t, false) })
	t.Run("ProduceAndFetchQuota", func(t *testing.T) { throttled = runQuota(t, true) })
	rate := func(r quotaRun) float64 { return float64(r.records) / r.took.Seconds() }
	t.Logf("no quota: %d messages in %v (%.0f msg/s), throttle produce %.2f s fetch %.2f s, write errors %v, retries %v, dead %d",
		free.records, free.took.Round(100*time.Millisecond), rate(free), free.produceThrottle, free.fetchTh, free.writeErrors, free.retries, free.dead)
	t.Logf("quota %d B/s produce and fetch: %d messages in %v (%.0f msg/s), throttle produce %.2f s fetch %.2f s, write errors %v, retries %v, dead %d",
		quotaBytesPerSecond, throttled.records, throttled.took.Round(100*time.Millisecond), rate(throttled), throttled.produceThrottle, throttled.fetchTh,
		throttled.writeErrors, throttled.retries, throttled.dead)
	if throttled.produceThrottle <= 0 && throttled.fetchTh <= 0 {
		t.Errorf("under a quota cimstream_kafka_throttle_seconds_total stayed 0 (produce %v, fetch %v)", throttled.produceThrottle, throttled.fetchTh)
	}
	for _, r := range []quotaRun{free, throttled} {
		if r.dead != 0 || r.writeErrors != 0 {
			t.Errorf("dead letters %d, write errors %v: a quota must only slow the service down", r.dead, r.writeErrors)
		}
	}
}
