package chaos_test

import (
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

type clusterFault struct {
	name string
	// conversations per customer: the traffic must outlast the fault.
	conversations int
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
		next := r.cl.Leader(t, name, 0)
		t.Logf("node %d (leader of %s/0) SIGKILLed after %d of %d rounds; new leader node %d after %v",
			leader, name, r.lp.sent.Load(), r.lp.rounds, next, time.Since(r.fault).Round(100*time.Millisecond))
		r.lp.waitShare(70, time.Minute)
		r.cl.Start(t, leader)
		t.Logf("node %d started again after %v, %d of %d rounds sent", leader, time.Since(r.fault).Round(100*time.Millisecond), r.lp.sent.Load(), r.lp.rounds)
	}
}

var clusterFaults = []clusterFault{
	{"ConnectorPartitionLeaderKilled", 8, killLeaderOf(func(c config.Config) string { return c.Topics.InboundChannels[0] })},
	{"CCMInboundPartitionLeaderKilled", 8, killLeaderOf(func(c config.Config) string { return c.Topics.CCMInbound })},
	{"ChangelogPartitionLeaderKilled", 8, killLeaderOf(func(c config.Config) string { return c.Topics.Sessions })},
	{"GroupCoordinatorKilled", 8, func(t *testing.T, r *clusterRun) {
		group := r.cfg.Kafka.Consumer.GroupID
		coord := r.cl.Coordinator(t, group)
		r.fault = time.Now()
		r.cl.Kill(t, coord)
		next := r.cl.Coordinator(t, group)
		t.Logf("node %d (coordinator of group %s) SIGKILLed after %d of %d rounds; coordinator now node %d after %v",
			coord, group, r.lp.sent.Load(), r.lp.rounds, next, time.Since(r.fault).Round(100*time.Millisecond))
		r.lp.waitShare(70, time.Minute)
		r.cl.Start(t, coord)
	}},
	{"RollingRestart", 16, func(t *testing.T, r *clusterRun) {
		r.fault = time.Now()
		for _, id := range r.cl.Nodes() {
			began := time.Now()
			r.cl.Stop(t, id)
			stopped := time.Since(began)
			r.cl.Start(t, id)
			insync := r.cl.WaitInSync(t, 90*time.Second)
			t.Logf("node %d: stopped (SIGTERM) in %v, started, every replica in sync %v later; %d of %d rounds sent",
				id, stopped.Round(100*time.Millisecond), insync.Round(100*time.Millisecond), r.lp.sent.Load(), r.lp.rounds)
		}
	}},
	{"OneNodeLeftDown", 8, func(t *testing.T, r *clusterRun) {
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
	p := sessionsProducer(t, cfg)
	in := start(t, path)
	r := &clusterRun{cl: cl, cfg: cfg, in: in}
	r.lp = produceLive(p, s, 250*time.Millisecond)
	r.lp.waitShare(25, time.Minute)
	f.run(t, r)
	r.lp.finish(t)
	// /readyz back to 200 (bounded), then the account: everything arrived and both groups caught up.
	waitReady(t, in, 60*time.Second)
	t.Logf("ready %v after the fault began; traffic done", time.Since(r.fault).Round(100*time.Millisecond))
	res := checkSessions(t, cfg, s, 0)
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
