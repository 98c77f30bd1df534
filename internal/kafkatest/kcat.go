package kafkatest

import (
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/stream"
)

// KcatRecord is one record as kcat (librdkafka) read it.
type KcatRecord struct {
	Partition int
	Offset    int64
	Key       string
	Value     string
	Headers   map[string]string
}

// KcatProduce writes lines with kcat, a client nobody here wrote, with acks=all; when keyed, each line
// is "key<TAB>value". Unkeyed records are spread over partitions by librdkafka's partitioner.
func KcatProduce(t testing.TB, topic string, keyed bool, lines ...string) {
	t.Helper()
	KcatProduceTo(t, Brokers(t), topic, keyed, lines...)
}

// KcatProduceTo is KcatProduce on other brokers (a test's own).
func KcatProduceTo(t testing.TB, brokers []string, topic string, keyed bool, lines ...string) {
	t.Helper()
	var args []string
	if keyed {
		args = []string{"-K", "\t"}
	}
	kcatProduce(t, brokers, topic, args, lines)
}

// KcatProduceHeaders writes keyed lines ("key<TAB>value") with kcat, each record carrying headers
// ("name=value" each, kcat's -H), with acks=all.
func KcatProduceHeaders(t testing.TB, topic string, headers []string, lines ...string) {
	t.Helper()
	args := []string{"-K", "\t"}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	kcatProduce(t, Brokers(t), topic, args, lines)
}

// KcatProducePartition writes unkeyed lines with kcat to one partition of topic, with acks=all.
func KcatProducePartition(t testing.TB, topic string, partition int, lines ...string) {
	t.Helper()
	kcatProduce(t, Brokers(t), topic, []string{"-p", strconv.Itoa(partition)}, lines)
}

// kcatProduce writes lines, one record each, with acks=all and kcat's other arguments args.
func kcatProduce(t testing.TB, brokers []string, topic string, args, lines []string) {
	t.Helper()
	cmd := exec.Command("kcat", append([]string{"-P", "-b", strings.Join(brokers, ","), "-t", topic, "-X", "acks=all"}, args...)...)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat produce to %s %v: %v\n%s", topic, args, err, b)
	}
}

// KcatConsume reads topic from the beginning with kcat, again and again, until done says so (at most
// 45 s, then the test fails).
func KcatConsume(t testing.TB, topic string, done func([]KcatRecord) bool) []KcatRecord {
	t.Helper()
	return KcatConsumeFrom(t, Brokers(t), topic, done)
}

// KcatConsumeFrom is KcatConsume on other brokers (a test's own).
func KcatConsumeFrom(t testing.TB, brokers []string, topic string, done func([]KcatRecord) bool) []KcatRecord {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		recs := kcatRead(t, brokers, topic)
		if done(recs) {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the expected records did not arrive within 45 s (%d read)", topic, len(recs))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// AtLeast is a KcatConsume condition: n records or more.
func AtLeast(n int) func([]KcatRecord) bool {
	return func(recs []KcatRecord) bool { return len(recs) >= n }
}

// AtLeastMessages is a KcatConsume condition: n records or more that are not session lifecycle events.
func AtLeastMessages(n int) func([]KcatRecord) bool {
	return func(recs []KcatRecord) bool { return len(Messages(recs)) >= n }
}

// Messages leaves out the session lifecycle events (records with the stream.HeaderEvent header).
func Messages(recs []KcatRecord) []KcatRecord {
	var out []KcatRecord
	for _, r := range recs {
		if _, ok := r.Headers[stream.HeaderEvent]; !ok {
			out = append(out, r)
		}
	}
	return out
}

func kcatRead(t testing.TB, brokers []string, topic string) []KcatRecord {
	t.Helper()
	cmd := exec.Command("kcat", "-C", "-b", strings.Join(brokers, ","), "-t", topic, "-o", "beginning", "-e", "-q", "-J")
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("kcat consume %s: %v", topic, err)
	}
	var recs []KcatRecord
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var j struct {
			Partition int      `json:"partition"`
			Offset    int64    `json:"offset"`
			Key       *string  `json:"key"`
			Payload   *string  `json:"payload"`
			Headers   []string `json:"headers"`
		}
		if err := json.Unmarshal([]byte(line), &j); err != nil {
			t.Fatalf("kcat line %q: %v", line, err)
		}
		r := KcatRecord{Partition: j.Partition, Offset: j.Offset, Headers: map[string]string{}}
		if j.Key != nil {
			r.Key = *j.Key
		}
		if j.Payload != nil {
			r.Value = *j.Payload
		}
		for i := 0; i+1 < len(j.Headers); i += 2 {
			r.Headers[j.Headers[i]] = j.Headers[i+1]
		}
		recs = append(recs, r)
	}
	return recs
}
