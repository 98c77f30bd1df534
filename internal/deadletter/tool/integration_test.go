package tool_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/deadletter/tool"
	"github.com/cimstream/cimstream/internal/kafkatest"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/internal/stream/deadletter"
	"github.com/cimstream/cimstream/pkg/cim"
)

func TestMain(m *testing.M) { os.Exit(kafkatest.Main(m)) }

// crashing fails the n-th "done" marker write, as a process killed between acknowledged replays and
// their record would.
type crashing struct {
	tool.Broker
	n, seen int
}

var errCrash = errors.New("killed")

func (c *crashing) Write(ctx context.Context, outs []stream.Output) []error {
	if len(outs) == 1 {
		if hs := outs[0].Headers; len(hs) == 1 && hs[0].Key == tool.HeaderMarker && string(hs[0].Value) == "done" {
			c.seen++
			if c.seen == c.n {
				return []error{errCrash}
			}
		}
	}
	return c.Broker.Write(ctx, outs)
}

// TestIntegrationReplayInterruptedRunIsCompletedWithoutDuplicates kills a replay between writing a
// batch and recording it, runs it again, and counts what reached the target with kcat.
func TestIntegrationReplayInterruptedRunIsCompletedWithoutDuplicates(t *testing.T) {
	cfg := kafkatest.Config(t)
	dlqTopic := kafkatest.Topic(t, "dlq", 2)
	target := kafkatest.Topic(t, "target", 3)
	b := tool.KafkaBroker(kafkatest.Factory(t))
	const n = 30
	var outs []stream.Output
	for i := range n {
		rec := stream.Record{Topic: target, Partition: i % 3, Offset: int64(i), Key: []byte(fmt.Sprint("c", i)), Time: time.Now(),
			Value: []byte(fmt.Sprintf(`{"header":{"sender":{"id":"w","type":"CONNECTOR","senderName":"W"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"c%d"}},"body":{"type":"PLAIN","markdownText":"m%d"}}`, i, i))}
		o := deadletter.Builder{Topic: dlqTopic, Pipeline: "inbound"}.Build(rec, cim.Violations{{Code: "delivery_failed", Message: "gave up"}})
		o.Partition = i % 2
		outs = append(outs, o)
	}
	for i, err := range b.Write(context.Background(), outs) {
		if err != nil {
			t.Fatalf("dead letter %d: %v", i, err)
		}
	}
	replay := tool.Replay{Topic: dlqTopic, BatchSize: 4, Validate: tool.Validator(cfg)}

	acct, err := replay.Run(context.Background(), &crashing{Broker: b, n: 3})
	if !errors.Is(err, errCrash) || !errors.Is(err, tool.ErrPartial) {
		t.Fatalf("interrupted run: %v", err)
	}
	if acct.Replayed != 8 || acct.Unfinished != 4 || !acct.Exact() {
		t.Errorf("interrupted run account %+v: want two recorded batches of 4 and one unfinished", acct)
	}
	written := len(kafkatest.KcatConsume(t, target, kafkatest.AtLeast(12)))
	if written != 12 {
		t.Fatalf("%d records in the target after the interrupted run, want 12 (3 batches)", written)
	}

	// Right away the unfinished batch may still be someone's: refused, nothing written.
	if _, err := replay.Run(context.Background(), b); !errors.Is(err, tool.ErrBusy) {
		t.Fatalf("a run right after: %v, want ErrBusy", err)
	}
	// Once the window has passed (shortened here), the next run completes it.
	replay.ActiveWindow = time.Millisecond
	acct, err = replay.Run(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if acct.Read != n || acct.Recovered != 4 || acct.AlreadyReplayed != 12 || acct.Replayed != n-12 || !acct.Exact() {
		t.Errorf("second run account %+v: want the unfinished batch recovered and the other %d replayed", acct, n-12)
	}
	acct, err = replay.Run(context.Background(), b)
	if err != nil || acct.Replayed != 0 || acct.AlreadyReplayed != n {
		t.Errorf("third run account %+v %v: want nothing replayed", acct, err)
	}

	time.Sleep(time.Second)
	recs := kafkatest.KcatConsume(t, target, kafkatest.AtLeast(n))
	seen := map[string]int{}
	for _, r := range recs {
		seen[r.Headers[tool.HeaderReplayOf]]++
	}
	if len(recs) != n || len(seen) != n {
		t.Errorf("target holds %d records of %d distinct dead letters, want %d of %d", len(recs), len(seen), n, n)
	}
}
