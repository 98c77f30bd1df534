//go:build cluster

package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

// Cluster fault tests: a three-node Apache Kafka cluster (scripts/kafka-cluster.sh: KRaft, replication
// factor 3, min.insync.replicas=2), cimstream's topics created with replication factor 3, scripted
// customers produced live, and one broker fault per subtest while the traffic flows. Each is counted
// from outside with the session checker (kcat reads the CCM and dead-letter topics): nothing lost, no
// divergent duplicate, no keyed customer's session split or merged, nothing dead-lettered, /readyz
// back to 200, and both consumer groups caught up with their input (settled=true).
//
// One cluster serves every subtest, in order; each has its own topics, groups and cimstream instance,
// and starts with every node up and every replica in sync, except that the last leaves one node down
// for the rest of the run.

// clusterRun is one subtest's world.
type clusterRun struct {
	cl    *kafkatest.Cluster
	cfg   config.Config
	in    *instance
	lp    *liveProducer
	fault time.Time // when the fault began
}

// readiness polls /readyz every 100 ms until stopped and says for how long it was not 200, and when it
// last turned 200 again.
type readiness struct {
	stop, done chan struct{}
	notReady   time.Duration
	lastBack   time.Time
	wentDown   int
}

func watchReady(in *instance) *readiness {
	w := &readiness{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		up := true
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			began := time.Now()
			ok := ready(in)
			switch {
			case !ok:
				w.notReady += 100*time.Millisecond + time.Since(began)
				if up {
					w.wentDown++
				}
			case !up:
				w.lastBack = time.Now()
			}
			up = ok
		}
	}()
	return w
}

func (w *readiness) end() { close(w.stop); <-w.done }

type clusterFault struct {
	name string
	// conversations per customer and the time between rounds: the traffic must outlast the fault.
	conversations int
	interval      time.Duration
	run           func(t *testing.T, r *clusterRun)
}

// killLeaderOf SIGKILLs the node leading partition 0 of topic, lets the traffic flow on the other two
// for a while, and starts it again.
func killLeaderOf(topic func(config.Config) string) func(t *testing.T, r *clusterRun) {
	return func(t *testing.T, r *clusterRun) {
		name := topic(r.cfg)
		leader := r.cl.Leader(t, name, 0)
		r.fault = time.Now()
		r.cl.Kill(t, leader)
		next := r.cl.LeaderNot(t, name, 0, leader)
		t.Logf("node %d (leader of %s/0) SIGKILLed after %d of %d rounds; new leader node %d after %v",
			leader, name, r.lp.sent.Load(), r.lp.rounds, next, time.Since(r.fault).Round(100*time.Millisecond))
		r.lp.waitShare(70, time.Minute)
		r.cl.Start(t, leader)
		t.Logf("node %d started again after %v, %d of %d rounds sent", leader, time.Since(r.fault).Round(100*time.Millisecond), r.lp.sent.Load(), r.lp.rounds)
	}
}

var clusterFaults = []clusterFault{
	{"ConnectorPartitionLeaderKilled", 8, 250 * time.Millisecond, killLeaderOf(func(c config.Config) string { return c.Topics.InboundChannels[0] })},
	{"CCMInboundPartitionLeaderKilled", 8, 250 * time.Millisecond, killLeaderOf(func(c config.Config) string { return c.Topics.CCMInbound })},
	{"ChangelogPartitionLeaderKilled", 8, 250 * time.Millisecond, killLeaderOf(func(c config.Config) string { return c.Topics.Sessions })},
	{"GroupCoordinatorKilled", 8, 250 * time.Millisecond, func(t *testing.T, r *clusterRun) {
		group := r.cfg.Kafka.Consumer.GroupID
		coord := r.cl.Coordinator(t, group)
		r.fault = time.Now()
		r.cl.Kill(t, coord)
		next := r.cl.CoordinatorNot(t, group, coord)
		t.Logf("node %d (coordinator of group %s) SIGKILLed after %d of %d rounds; coordinator now node %d after %v",
			coord, group, r.lp.sent.Load(), r.lp.rounds, next, time.Since(r.fault).Round(100*time.Millisecond))
		r.lp.waitShare(70, time.Minute)
		r.cl.Start(t, coord)
	}},
	{"RollingRestart", 12, 500 * time.Millisecond, func(t *testing.T, r *clusterRun) {
		r.fault = time.Now()
		for _, id := range r.cl.Nodes() {
			began := time.Now()
			r.cl.Stop(t, id)
			stopped := time.Since(began)
			r.cl.Start(t, id)
			started := time.Since(began) - stopped
			insync := r.cl.WaitInSync(t, 90*time.Second)
			t.Logf("node %d: stopped (SIGTERM) in %v, registered again %v later, every replica in sync %v after that; %d of %d rounds sent",
				id, stopped.Round(100*time.Millisecond), started.Round(100*time.Millisecond), insync.Round(100*time.Millisecond), r.lp.sent.Load(), r.lp.rounds)
		}
	}},
	{"OneNodeLeftDown", 8, 250 * time.Millisecond, func(t *testing.T, r *clusterRun) {
		// The node leading the CCM topic's partition 0, never started again.
		leader := r.cl.Leader(t, r.cfg.Topics.CCMInbound, 0)
		r.fault = time.Now()
		r.cl.Kill(t, leader)
		t.Logf("node %d SIGKILLed after %d of %d rounds; left down for the rest of the run", leader, r.lp.sent.Load(), r.lp.rounds)
	}},
}

func TestChaosCluster(t *testing.T) {
	began := time.Now()
	cl := kafkatest.StartCluster(t)
	t.Logf("three-node cluster %v ready after %v", cl.Addrs, time.Since(began).Round(100*time.Millisecond))
	t.Run("TopicsCheckFlagsMinInsyncReplicas", func(t *testing.T) { topicsCheckOnCluster(t, cl) })
	for i, f := range clusterFaults {
		ok := t.Run(f.name, func(t *testing.T) { runClusterFault(t, cl, uint64(20+i), f) })
		if !ok {
			// The next fault needs the whole cluster.
			for _, id := range cl.Nodes() {
				cl.Start(t, id)
			}
		}
		if i < len(clusterFaults)-1 {
			cl.WaitInSync(t, 90*time.Second)
		}
	}
	t.Logf("cluster suite: %v", time.Since(began).Round(time.Second))
}

func runClusterFault(t *testing.T, cl *kafkatest.Cluster, seed uint64, f clusterFault) {
	began := time.Now()
	cfg, path := setup(t, cl.Addrs, func(c *config.Config) {
		c.Topics.ReplicationFactor = 3
		c.Inbound.SessionIdleTimeout = sessionsIdle
	})
	s := newScript(scriptOptions{seed: seed, keyed: 8, unkeyed: 4, conversations: f.conversations, maxBody: 4})
	in := start(t, path)
	r := &clusterRun{cl: cl, cfg: cfg, in: in}
	r.lp = produceLiveIdempotent(cfg.Kafka.Brokers, cfg.Topics.InboundChannels[0], s, f.interval)
	r.lp.waitShare(25, time.Minute)
	w := watchReady(in)
	f.run(t, r)
	r.lp.finish(t)
	// /readyz back to 200 (bounded), then the account: everything arrived and both groups caught up.
	waitReady(t, in, 60*time.Second)
	w.end()
	back := "never went down"
	if w.wentDown > 0 {
		back = fmt.Sprintf("last back to 200 %v after the fault began", w.lastBack.Sub(r.fault).Round(100*time.Millisecond))
	}
	t.Logf("/readyz: not 200 %d time(s), %v in all, %s; traffic done %v after the fault began",
		w.wentDown, w.notReady.Round(100*time.Millisecond), back, time.Since(r.fault).Round(100*time.Millisecond))
	// The account assumes the connector topic holds every scripted message once.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	ends, err := endOffsets(ctx, factoryClient(t, cfg), cfg.Topics.InboundChannels[0])
	cancel()
	var input int64
	for _, e := range ends {
		input += e
	}
	if err != nil || input != int64(s.count()) {
		t.Errorf("the connector topic holds %d records for %d scripted messages (%v)", input, s.count(), err)
	}
	res := checkSessions(t, cfg, s, 0)
	keyedCopiesDiffer(t, cfg, s)
	if !strings.Contains(res.line, " dead=0 ") {
		t.Errorf("records were dead-lettered during a broker fault: %s", res.line)
	}
	if !strings.Contains(res.line, "settled=true") {
		t.Errorf("the backlog did not drain (a group still lags or the CCM topic still grows): %s", res.line)
	}
	if !ready(in) {
		t.Error("/readyz is not 200 after the backlog drained")
	}
	t.Logf("%s took %v", t.Name(), time.Since(began).Round(100*time.Millisecond))
}

// topicsCheckOnCluster: `cimstream topics check` on topics created with replication factor 3 (and the
// cluster's min.insync.replicas=2) finds nothing; after Kafka's ConfigCommand set min.insync.replicas=1
// on one topic and 4 on another, it flags both and exits 1.
func topicsCheckOnCluster(t *testing.T, cl *kafkatest.Cluster) {
	cfg, path := setup(t, cl.Addrs, func(c *config.Config) { c.Topics.ReplicationFactor = 3 })
	check := func() (string, int) {
		out, err := exec.Command(binary(t), "topics", "check", "--config", path).CombinedOutput()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	out, code := check()
	if code != 0 || !strings.Contains(out, "every topic as configured") {
		t.Fatalf("topics check on RF 3 / min.insync.replicas 2 topics: exit %d\n%s", code, out)
	}
	for topic, minISR := range map[string]string{cfg.Topics.CCMInbound: "1", cfg.Topics.DeadLetter: "4"} {
		cl.Tool(t, "kafka.admin.ConfigCommand", "--bootstrap-server", strings.Join(cl.Addrs, ","), "--alter",
			"--entity-type", "topics", "--entity-name", topic, "--add-config", "min.insync.replicas="+minISR)
	}
	// The change reaches every broker through the metadata log; bounded wait.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		out, code = check()
		if strings.Count(out, "min.insync.replicas is ") == 2 || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("topics check after min.insync.replicas 1 and 4 on replication factor 3: exit %d\n%s", code, out)
	for _, want := range []string{
		cfg.Topics.CCMInbound + ": min.insync.replicas is 1, configured at least 2 with replication factor 3",
		cfg.Topics.DeadLetter + ": min.insync.replicas is 4, configured at most 3, the replication factor",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("topics check does not say %q", want)
		}
	}
	if code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
}

// keyedCopiesDiffer fails on a keyed customer's scripted message whose copies on the CCM topic are not
// all byte-identical, whatever their ids (the checker compares copies of one message id; two copies with
// different ids would be two messages to the CCM).
func keyedCopiesDiffer(t *testing.T, cfg config.Config, s *script) {
	t.Helper()
	keyed := map[string]bool{}
	for _, c := range s.customers {
		if c.keyed {
			for _, m := range c.msgs {
				keyed[m.text] = true
			}
		}
	}
	copies := map[string][]*outRecord{}
	for _, r := range kafkatest.KcatConsumeFrom(t, cfg.Kafka.Brokers, cfg.Topics.CCMInbound, func([]kafkatest.KcatRecord) bool { return true }) {
		o := parseOut(r)
		if o.event == "" && keyed[o.text] {
			copies[o.text] = append(copies[o.text], o)
		}
	}
	differ := 0
	for text, list := range copies {
		for _, o := range list[1:] {
			if o.Value != list[0].Value {
				differ++
				t.Errorf("keyed message %q has copies that differ:\n  p%d@%d (from %s) %s\n  p%d@%d (from %s) %s", text,
					list[0].Partition, list[0].Offset, sourceOf(list[0]), list[0].Value, o.Partition, o.Offset, sourceOf(o), o.Value)
				break
			}
		}
	}
	t.Logf("keyed messages with copies that differ (any id): %d", differ)
}

// produceLiveIdempotent is produceLive with kcat's idempotent producer (librdkafka, enable.idempotence):
// a produce retried across a leader change is written once, as a Java connector's would be. (The
// kafka-go writer of produceLive has no idempotence: after a failover it can write a record twice, and
// the account would count the connector's duplicate as cimstream's.) Keyed customers are keyed by name
// (murmur2, the Java partitioner); unkeyed ones have no key. Record times are the producer's clock, so
// the script's messages carry no time of their own and time_mismatch is not checked here.
func produceLiveIdempotent(brokers []string, topic string, s *script, interval time.Duration) *liveProducer {
	rounds := s.rounds()
	lp := &liveProducer{rounds: len(rounds), done: make(chan error, 1)}
	go func() {
		for _, r := range rounds {
			var keyed, unkeyed []string
			for _, m := range r {
				if m.customer.keyed {
					keyed = append(keyed, m.customer.name+"\t"+string(m.value()))
				} else {
					unkeyed = append(unkeyed, string(m.value()))
				}
			}
			for _, batch := range []struct {
				keyed bool
				lines []string
			}{{true, keyed}, {false, unkeyed}} {
				if len(batch.lines) == 0 {
					continue
				}
				if err := kcatIdempotent(brokers, topic, batch.keyed, batch.lines); err != nil {
					lp.done <- err
					return
				}
			}
			lp.sent.Add(1)
			time.Sleep(interval)
		}
		lp.done <- nil
	}()
	return lp
}

func kcatIdempotent(brokers []string, topic string, keyed bool, lines []string) error {
	args := []string{"-P", "-b", strings.Join(brokers, ","), "-t", topic, "-X", "acks=all", "-X", "enable.idempotence=true",
		"-X", "partitioner=murmur2_random", "-X", "message.timeout.ms=60000"}
	if keyed {
		args = append(args, "-K", "\t")
	}
	cmd := exec.Command("kcat", args...)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	if err == nil && strings.Contains(string(out), "Delivery failed") {
		err = errors.New("delivery failed")
	}
	if err != nil {
		return fmt.Errorf("kcat produce to %s: %v\n%s", topic, err, out)
	}
	return nil
}
