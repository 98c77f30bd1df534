//go:build cluster

package chaos_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

// The coalesced changelog's crash window, arranged rather than hoped for (docs/inbound.md, "Coalesced
// changelog"). On one broker a batch's CCM and changelog records go in one produce request, so a kill
// cannot be placed between them. On three nodes it can: the changelog topic gets
// min.insync.replicas=3 (the CCM topic keeps the cluster's 2), and with one node stopped the broker
// refuses every acks=all changelog write (NOT_ENOUGH_REPLICAS, before it appends anything) while CCM
// writes are acknowledged. cimstream works a backlog in that state: each partition's first batch
// reaches the CCM topic and its changelog states are retried without end, uncommitted. The test checks
// from outside that this happened, SIGKILLs cimstream, brings the node back and lets a new instance
// decide the batches again from the earlier states: the session accounts of keyed customers must be 0
// and every message must reach the CCM topic.

func TestChaosClusterChangelogWritesRefusedThenKilled(t *testing.T) {
	began := time.Now()
	binary(t) // built before the cluster runs: the machine is small
	cl := kafkatest.StartCluster(t)
	t.Logf("three-node cluster %v ready after %v", cl.Addrs, time.Since(began).Round(100*time.Millisecond))
	cfg, path := setup(t, cl.Addrs, func(c *config.Config) {
		c.Topics.ReplicationFactor = 3
		c.Inbound.SessionIdleTimeout = sessionsIdle
	})
	cl.Tool(t, "kafka.admin.ConfigCommand", "--bootstrap-server", strings.Join(cl.Addrs, ","), "--alter",
		"--entity-type", "topics", "--entity-name", cfg.Topics.Sessions, "--add-config", "min.insync.replicas=3")

	const gap = 45 * time.Minute
	s := newScript(scriptOptions{seed: 30, keyed: 16, unkeyed: 4, conversations: 10, maxBody: 5, idleGaps: true})
	datePastEnding(s, gap)
	rounds := s.rounds()
	half := len(rounds) / 2
	p := sessionsProducer(t, cfg)
	var rc replayCount

	// 1. The first half with every node up: its states land on the changelog.
	produceRounds(t, p, rounds[:half])
	in := start(t, path)
	if !settle(t, cfg) {
		t.Fatalf("the first half did not settle: %s", pipelineProgress(t, cfg))
	}
	rc.add(in)
	stopClean(t, cfg, in)
	// 2. The second half waits on the connector topic, produced before any fault (no retried produce
	// can write a connector record twice).
	produceRounds(t, p, rounds[half:])

	// 3. One node stopped; every changelog partition is then one replica short of min.insync.replicas.
	node := nodeNotCoordinating(t, cl, cfg.Kafka.Consumer.GroupID, cfg.Kafka.Consumer.GroupID+".sessions")
	cl.Stop(t, node)
	waitChangelogShort(t, cl, cfg.Topics.Sessions)
	changelogBefore, ccmBefore := endSum(t, cl, cfg.Topics.Sessions), endSum(t, cl, cfg.Topics.CCMInbound)

	// 4. cimstream works the backlog: CCM records acknowledged, changelog writes refused.
	in = start(t, path)
	ccmAt := waitRefusedBatches(t, cl, cfg, in, ccmBefore)
	changelogAt := endSum(t, cl, cfg.Topics.Sessions)
	keyedAhead := keyedSecondHalfOnCCM(t, cfg, rounds[half:])
	logText, _ := os.ReadFile(in.log.Name())
	refusals := strings.Count(string(logText), "Not Enough Replicas")
	t.Logf("node %d stopped: CCM records %d -> %d, changelog records %d -> %d, keyed second-half messages on the CCM topic %d, "+
		"NOT_ENOUGH_REPLICAS in the log %d, write retries %.0f: %s", node, ccmBefore, ccmAt, changelogBefore, changelogAt,
		keyedAhead, refusals, metricSum(in, "cimstream_write_retries_total"), pipelineProgress(t, cfg))
	// The fault state itself, asserted: decisions on the CCM topic that no changelog state holds.
	if ccmAt <= ccmBefore || keyedAhead == 0 {
		t.Fatalf("no CCM record of the second half was acknowledged with a node down (CCM %d -> %d, keyed %d)", ccmBefore, ccmAt, keyedAhead)
	}
	if changelogAt != changelogBefore {
		t.Fatalf("the changelog took %d records with a node down: min.insync.replicas=3 did not refuse its writes", changelogAt-changelogBefore)
	}
	if refusals == 0 {
		t.Fatalf("cimstream's log does not name NOT_ENOUGH_REPLICAS:\n%s", tail(string(logText), 3000))
	}

	// 5. SIGKILL with the batches half written; the node back, every replica in sync; a new instance.
	rc.add(in)
	in.kill(t)
	cl.Start(t, node)
	insync := cl.WaitInSync(t, 90*time.Second)
	t.Logf("node %d started again, every replica in sync after %v", node, insync.Round(100*time.Millisecond))
	in = start(t, path)

	// 6. The account: the second half decided again from the first half's states.
	connectorHoldsScript(t, cfg, s)
	res := checkSessions(t, cfg, s, 0)
	keyedCopiesDiffer(t, cfg, s)
	for _, want := range []string{" dead=0 ", "settled=true"} {
		if !strings.Contains(res.line, want) {
			t.Errorf("want %s in the account: %s", strings.TrimSpace(want), res.line)
		}
	}
	if grew := endSum(t, cl, cfg.Topics.Sessions); grew <= changelogAt {
		t.Errorf("the changelog did not take the second half's states after the restart (%d records, %d before)", grew, changelogAt)
	}
	rc.add(in)
	rc.log(t)
	t.Logf("%s took %v", t.Name(), time.Since(began).Round(time.Second))
}

// stopClean stops in with SIGTERM (it drains and commits) within the shutdown budget.
func stopClean(t *testing.T, cfg config.Config, in *instance) {
	t.Helper()
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.done:
	case <-time.After(cfg.Shutdown.Timeout + 10*time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}

// nodeNotCoordinating is a node that coordinates none of groups, so that stopping it moves no
// coordinator (the fault is the changelog's alone).
func nodeNotCoordinating(t *testing.T, cl *kafkatest.Cluster, groups ...string) int {
	t.Helper()
	busy := map[int]bool{}
	for _, g := range groups {
		busy[cl.Coordinator(t, g)] = true
	}
	for _, id := range cl.Nodes() {
		if !busy[id] {
			return id
		}
	}
	t.Fatalf("every node coordinates one of %v", groups)
	return 0
}

// waitChangelogShort waits (at most 30 s) until every partition of topic has a leader and fewer
// in-sync replicas than its three, as after a node stopped.
func waitChangelogShort(t *testing.T, cl *kafkatest.Cluster, topic string) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		md, err := cl.Client().Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		cancel()
		if err != nil || len(md.Topics) != 1 || len(md.Topics[0].Partitions) == 0 {
			last = "no metadata"
			continue
		}
		short := 0
		for _, p := range md.Topics[0].Partitions {
			if p.Leader.Host != "" && len(p.Isr) < 3 {
				short++
			}
		}
		if short == len(md.Topics[0].Partitions) {
			return
		}
		last = "partitions short of a replica: " + strconv.Itoa(short) + " of " + strconv.Itoa(len(md.Topics[0].Partitions))
	}
	t.Fatalf("%s: not every partition lost an in-sync replica within 30 s (%s)", topic, last)
}

// endSum is the number of records on topic (the sum of its end offsets), read through the nodes up.
func endSum(t *testing.T, cl *kafkatest.Cluster, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := endOffsets(ctx, cl.Client(), topic)
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	var n int64
	for _, e := range ends {
		n += e
	}
	return n
}

// waitRefusedBatches waits until in has written CCM records beyond base and retried writes, then until
// the CCM topic stops growing for 2 s (each partition's batch waits for its changelog states): at most
// 60 s in all. It returns the CCM topic's record count.
func waitRefusedBatches(t *testing.T, cl *kafkatest.Cluster, cfg config.Config, in *instance, base int64) int64 {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	n, stableSince := base, time.Time{}
	for ; time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		now := endSum(t, cl, cfg.Topics.CCMInbound)
		if now != n || now == base || metricSum(in, "cimstream_write_retries_total") <= 0 {
			n, stableSince = now, time.Now()
			continue
		}
		if time.Since(stableSince) >= 2*time.Second {
			return n
		}
	}
	t.Logf("the CCM topic was still growing or nothing was retried after 60 s: %s", pipelineProgress(t, cfg))
	return n
}

// keyedSecondHalfOnCCM counts the keyed customers' messages of rounds found on the CCM topic.
func keyedSecondHalfOnCCM(t *testing.T, cfg config.Config, rounds [][]*scriptMsg) int {
	t.Helper()
	keyed := map[string]bool{}
	for _, r := range rounds {
		for _, m := range r {
			if m.customer.keyed {
				keyed[m.text] = true
			}
		}
	}
	n := 0
	for _, r := range kafkatest.KcatConsumeFrom(t, cfg.Kafka.Brokers, cfg.Topics.CCMInbound, func([]kafkatest.KcatRecord) bool { return true }) {
		if o := parseOut(r); o.event == "" && keyed[o.text] {
			n++
		}
	}
	return n
}

// connectorHoldsScript fails unless the connector topic holds every scripted message once: the
// account counts any extra copy as cimstream's.
func connectorHoldsScript(t *testing.T, cfg config.Config, s *script) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := endOffsets(ctx, factoryClient(t, cfg), cfg.Topics.InboundChannels[0])
	var n int64
	for _, e := range ends {
		n += e
	}
	if err != nil || n != int64(s.count()) {
		t.Errorf("the connector topic holds %d records for %d scripted messages (%v)", n, s.count(), err)
	}
}
