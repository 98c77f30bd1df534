package chaos_test

// Outbound fault scenarios (ccm.outbound → connector topics, notifications, dead letters), with the real
// binary and real Apache Kafka. Each prints one account line (outbound_account_test.go) and fails unless
// the contract's outbound guarantees hold for every message id.

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

// obDeleteTopic deletes a topic on cfg's brokers and waits until its metadata says so (bounded).
func obDeleteTopic(t *testing.T, cfg config.Config, topic string) {
	t.Helper()
	f, err := kafkaclient.New(cfg.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := f.Client().DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	if err == nil {
		err = resp.Errors[topic]
	}
	if err != nil {
		t.Fatalf("delete topic %s: %v", topic, err)
	}
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		md, err := f.Client().Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		if err == nil && (len(md.Topics) == 0 || md.Topics[0].Error != nil) {
			return
		}
	}
	t.Fatalf("topic %s still listed 15 s after its deletion", topic)
}

// obCommitted returns the outbound group's committed offset per partition of ccm.outbound (-1: none),
// asked of the broker.
func obCommitted(t *testing.T, cfg config.Config) map[int]int64 {
	t.Helper()
	f, err := kafkaclient.New(cfg.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	parts := make([]int, cfg.Topics.Partitions)
	for i := range parts {
		parts[i] = i
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := f.Client().OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: cfg.Kafka.Consumer.GroupID + ".outbound",
		Topics: map[string][]int{cfg.Topics.CCMOutbound: parts}})
	if err != nil {
		t.Fatalf("committed offsets of the outbound group: %v", err)
	}
	out := map[int]int64{}
	for _, p := range resp.Topics[cfg.Topics.CCMOutbound] {
		out[p.Partition] = p.CommittedOffset
	}
	return out
}

// 1. The broker is stopped for 10 s while replies flow, and started again. The outage is shorter than
// outbound.deliveryTimeout (30 s), so every message must end ACCEPTED on all its destinations.
func TestChaosOutboundBrokerStoppedTenSeconds(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	lap := func(what string) { t.Logf("%6.1fs %s", time.Since(t0).Seconds(), what) }
	broker := kafkatest.StartBroker(t, kafkatest.BrokerOptions{})
	lap("broker up")
	cfg, path, tr := obWorld(t, []string{broker.Addr}, true, func(c *config.Config) { c.Outbound.DeliveryTimeout = 30 * time.Second })
	lap("topics")
	start(t, path)
	lap("started")
	tr.customers = 20
	tr.produce(t, 4*scale())
	lap("produced")
	broker.Stop(t) // right after the burst: writes, notifications and commits are in flight
	lap("stopped")
	time.Sleep(10 * time.Second)
	broker.Start(t)
	lap("restarted")
	kafkatest.WaitLeaders(t, cfg)
	lap("leaders")
	tr.produce(t, 2*scale())
	lap("produced")
	tr.account(t, cfg, obAccountOptions{wait: 60 * time.Second})
	lap("accounted")
}

// 2. cimstream is killed with SIGKILL mid-stream, three times, and restarted.
func TestChaosOutboundKilledThreeTimes(t *testing.T) {
	t.Parallel()
	cfg, path, tr := obWorld(t, kafkatest.Brokers(t), true, nil)
	tr.customers = 20
	in := start(t, path)
	for i := 0; i < 3; i++ {
		tr.produce(t, 2*scale())
		time.Sleep(time.Duration(100+100*i) * time.Millisecond) // mid-stream: some settled, some not
		in.kill(t)
		in = start(t, path)
	}
	tr.produce(t, 2*scale())
	tr.account(t, cfg, obAccountOptions{})
}

// 3. One connector topic is deleted while the other is fine. Its messages end FAILED/500 after
// outbound.deliveryTimeout and dead-lettered with delivery_failed; the other channel's messages, on the
// same ccm.outbound partitions, end ACCEPTED on their topic; nothing is stuck.
func TestChaosOutboundOneDestinationDeleted(t *testing.T) {
	t.Parallel()
	const timeout = 3 * time.Second
	cfg, path, tr := obWorld(t, kafkatest.Brokers(t), false, func(c *config.Config) {
		c.Outbound.DeliveryTimeout = timeout
		c.Kafka.Producer.MaxAttempts = 2
	})
	in := start(t, path)
	tr.customers = 12 // even customers talk through whatsapp, odd ones through web
	tr.produce(t, 1)
	gone := tr.services[0].dests[0]
	// Before the deletion: every message of round 0 is delivered; keep what the doomed topic holds.
	before := kafkatest.KcatConsumeFrom(t, cfg.Kafka.Brokers, gone, kafkatest.AtLeast(tr.customers/2))
	obDeleteTopic(t, cfg, gone)
	time.Sleep(2 * time.Second) // let the deletion reach the metadata the service's writer reads
	tr.services[0].gone = true
	began := time.Now()
	tr.produce(t, 2)
	res := tr.account(t, cfg, obAccountOptions{deleted: map[string][]kafkatest.KcatRecord{gone: before}, wait: 10*timeout + 10*time.Second})
	t.Logf("settled %v after the traffic to the deleted topic began (deliveryTimeout %v)", time.Since(began).Round(100*time.Millisecond), timeout)
	if res.noStatus > 0 {
		t.Errorf("%d messages without a final status %v after the traffic began: the partition is stuck", res.noStatus, time.Since(began).Round(time.Second))
	}
	if !ready(in) {
		t.Error("the service must stay ready while one connector topic is missing")
	}
}

// 4. The dead-letter topic is unavailable for a while (deleted, then created again). Invalid messages
// sent meanwhile must not be committed before their dead letters are acknowledged: the service is killed
// while the topic is missing and restarted after it is back, and every invalid message must still end as
// exactly one dead letter with a FAILED/400 notification; valid messages around them end ACCEPTED.
func TestChaosOutboundDeadLetterTopicUnavailable(t *testing.T) {
	t.Parallel()
	const timeout = 3 * time.Second
	cfg, path, tr := obWorld(t, kafkatest.Brokers(t), false, func(c *config.Config) {
		c.Outbound.DeliveryTimeout = timeout
		c.Kafka.Producer.MaxAttempts = 2
	})
	in := start(t, path)
	tr.customers = 6
	tr.produce(t, 1)
	kafkatest.KcatConsumeFrom(t, cfg.Kafka.Brokers, cfg.Topics.Notifications, kafkatest.AtLeast(tr.customers))
	obDeleteTopic(t, cfg, cfg.Topics.DeadLetter)
	time.Sleep(2 * time.Second) // let the deletion reach the metadata the service's writer reads
	bad := tr.produceInvalid(t, 6)
	tr.produce(t, 1)
	// Wait past the delivery timeout: a service that gives up on dead letters commits their offsets now.
	isBad := map[string]bool{}
	for _, id := range bad {
		isBad[id] = true
	}
	time.Sleep(timeout + 3*time.Second)
	committed := obCommitted(t, cfg)
	input := kafkatest.KcatConsumeFrom(t, cfg.Kafka.Brokers, cfg.Topics.CCMOutbound, kafkatest.AtLeast(len(tr.expect)))
	early := 0
	for _, r := range input {
		if id := obID(r.Value); isBad[id] && committed[r.Partition] > r.Offset {
			early++
			t.Errorf("%s (partition %d offset %d) was committed early: the group's committed offset there is %d while %s, "+
				"where its dead letter must go, does not exist", id, r.Partition, r.Offset, committed[r.Partition], cfg.Topics.DeadLetter)
		}
	}
	in.kill(t)
	kafkatest.CreateTopic(t, cfg.Topics.DeadLetter, cfg.Topics.Partitions)
	start(t, path)
	res := tr.account(t, cfg, obAccountOptions{wait: 20 * time.Second, extra: fmt.Sprintf("invalid=%d committed_early=%d", len(bad), early)})
	if res.deadDupSame > 0 {
		t.Errorf("%d extra dead-letter copies: each invalid message must end as exactly one dead letter", res.deadDupSame)
	}
}

// 5. SIGTERM under load: exits 0 within the shutdown budget, and a restart settles nothing twice (no
// duplicate notification or connector record after a clean shutdown).
func TestChaosOutboundSIGTERMUnderLoad(t *testing.T) {
	t.Parallel()
	cfg, path, tr := obWorld(t, kafkatest.Brokers(t), true, nil)
	tr.customers = 50
	in := start(t, path)
	tr.produce(t, 6*scale())
	began := time.Now()
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-in.done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(cfg.Shutdown.Timeout + 10*time.Second):
		t.Fatalf("no exit within the shutdown budget (%v)", cfg.Shutdown.Timeout)
	}
	stopped := time.Since(began).Round(time.Millisecond)
	t.Logf("stopped %v after SIGTERM", stopped)
	again := start(t, path)
	tr.produce(t, 2)
	res := tr.account(t, cfg, obAccountOptions{extra: fmt.Sprintf("sigterm_exit=%v", stopped)})
	if dups := res.notifDupSame + res.destDupSame + res.deadDupSame; dups != 0 {
		log1, _ := os.ReadFile(in.log.Name())
		log2, _ := os.ReadFile(again.log.Name())
		t.Errorf("%d notifications, %d connector records and %d dead letters written twice after a clean shutdown; logs:\n%s\n---\n%s",
			res.notifDupSame, res.destDupSame, res.deadDupSame, tail(string(log1), 3000), tail(string(log2), 3000))
	}
}
