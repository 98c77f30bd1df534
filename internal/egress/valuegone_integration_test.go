package egress_test

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/egress"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

// rawLetter is a dead letter as kcat reads it, with a null value told apart from an empty one.
type rawLetter struct {
	Payload *string  `json:"payload"`
	Headers []string `json:"headers"`
}

func (l rawLetter) header(key string) string {
	for i := 0; i+1 < len(l.Headers); i += 2 {
		if l.Headers[i] == key {
			return l.Headers[i+1]
		}
	}
	return ""
}

// TestIntegrationEgressValueGoneDeadLetterIsNoTombstone: a connector-topic record without a value (a
// tombstone here; a record deleted by retention before its turn takes the same path) is not POSTed, and
// its dead letter on the real dead-letter topic has a non-null (empty) value with cimstream.value.missing,
// so compaction and consumers do not take it for a delete.
func TestIntegrationEgressValueGoneDeadLetterIsNoTombstone(t *testing.T) {
	c := newConnector(t, func(request, int) (int, string) { return http.StatusAccepted, "" })
	cfg := setup(t, c, 1)
	run(t, cfg)
	// -Z: an empty value is sent as null, a tombstone.
	cmd := exec.Command("kcat", "-P", "-Z", "-b", strings.Join(kafkatest.Brokers(t), ","), "-t", topic(cfg), "-K", "\t", "-X", "acks=all")
	cmd.Stdin = strings.NewReader("gus\t\n")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat: %v\n%s", err, b)
	}
	var letters []rawLetter
	for deadline := time.Now().Add(45 * time.Second); len(letters) == 0; time.Sleep(300 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no dead letter within 45 s")
		}
		out, err := exec.Command("kcat", "-C", "-b", strings.Join(kafkatest.Brokers(t), ","), "-t", cfg.Topics.DeadLetter,
			"-o", "beginning", "-e", "-q", "-J").Output()
		if err != nil {
			t.Fatalf("kcat consume: %v", err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			var l rawLetter
			if line != "" && json.Unmarshal([]byte(line), &l) == nil {
				letters = append(letters, l)
			}
		}
	}
	l := letters[0]
	if l.Payload == nil {
		t.Fatal("the dead letter is a tombstone (null value)")
	}
	if *l.Payload != "" || l.header(egress.HeaderValueMissing) != "true" || l.header("cimstream.error.codes") != egress.CodeFailed {
		t.Errorf("dead letter value %q, %s %q, codes %q; want empty, true, %s", *l.Payload, egress.HeaderValueMissing,
			l.header(egress.HeaderValueMissing), l.header("cimstream.error.codes"), egress.CodeFailed)
	}
	if n := len(c.requests()); n != 0 {
		t.Errorf("the connector got %d POSTs for a record without a value", n)
	}
}
