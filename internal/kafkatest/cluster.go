package kafkatest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// Cluster is a three-node Apache Kafka cluster of a test's own (scripts/kafka-cluster.sh): KRaft nodes
// that are broker and controller each, replication factor 3 and min.insync.replicas=2 by default.
type Cluster struct {
	// Addrs is the bootstrap list, node 1 first.
	Addrs []string
	env   []string
	down  map[int]bool
}

// StartCluster starts three nodes on free ports and wipes them when the test ends (t should be the
// test that owns the whole run of faults, so subtests can share one cluster). It needs Java; the jars
// come from the same cache as the shared broker's.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	var ports, cports []string
	for range 3 {
		ports = append(ports, strconv.Itoa(FreePort(t)))
		cports = append(cports, strconv.Itoa(FreePort(t)))
	}
	c := &Cluster{down: map[int]bool{}, env: append(os.Environ(),
		"KAFKA_CLUSTER_PORTS="+strings.Join(ports, ","), "KAFKA_CLUSTER_CONTROLLER_PORTS="+strings.Join(cports, ","))}
	out := c.script(t, "up")
	c.Addrs = strings.Split(strings.TrimSpace(lastLine(out)), ",")
	t.Cleanup(func() { c.script(t, "down") })
	return c
}

// Nodes is the node ids, 1 to 3.
func (c *Cluster) Nodes() []int { return []int{1, 2, 3} }

// Addr is node id's client address.
func (c *Cluster) Addr(id int) string { return c.Addrs[id-1] }

// Kill ends node id with SIGKILL (its data is kept).
func (c *Cluster) Kill(t testing.TB, id int) {
	t.Helper()
	c.script(t, "kill", strconv.Itoa(id))
	c.down[id] = true
}

// Stop ends node id with SIGTERM, a controlled shutdown (its leaderships move first), as a rolling
// restart does; its data is kept.
func (c *Cluster) Stop(t testing.TB, id int) {
	t.Helper()
	c.script(t, "stop", strconv.Itoa(id))
	c.down[id] = true
}

// Start starts node id again on its data and waits until it is registered with the controller.
func (c *Cluster) Start(t testing.TB, id int) {
	t.Helper()
	c.script(t, "start", strconv.Itoa(id))
	delete(c.down, id)
}

// Up is the addresses of the nodes not killed.
func (c *Cluster) Up() []string {
	var out []string
	for _, id := range c.Nodes() {
		if !c.down[id] {
			out = append(out, c.Addr(id))
		}
	}
	return out
}

// Client is a kafka-go client that bootstraps from every node still running.
func (c *Cluster) Client() *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(c.Up()...), Timeout: 5 * time.Second,
		Transport: &kafka.Transport{MetadataTTL: 500 * time.Millisecond}}
}

// Leader is the node id that leads topic's partition now (bounded wait: 30 s for a leader).
func (c *Cluster) Leader(t testing.TB, topic string, partition int) int {
	t.Helper()
	return c.LeaderNot(t, topic, partition, 0)
}

// LeaderNot waits (at most 30 s) until topic's partition has a leader other than node not (0: any),
// as after that node was killed, and returns it.
func (c *Cluster) LeaderNot(t testing.TB, topic string, partition, not int) int {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		md, err := c.Client().Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		cancel()
		if err == nil && len(md.Topics) == 1 && md.Topics[0].Error == nil {
			for _, p := range md.Topics[0].Partitions {
				if p.ID == partition && p.Leader.Host != "" && p.Leader.ID != not {
					return p.Leader.ID
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/%d: no leader after 30 s (%v)", topic, partition, err)
		}
	}
}

// Coordinator is the node id coordinating consumer group now (FindCoordinator; bounded wait 30 s).
func (c *Cluster) Coordinator(t testing.TB, group string) int {
	t.Helper()
	return c.CoordinatorNot(t, group, 0)
}

// CoordinatorNot waits (at most 30 s) until group's coordinator is a node other than not (0: any).
func (c *Cluster) CoordinatorNot(t testing.TB, group string, not int) int {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := c.Client().FindCoordinator(ctx, &kafka.FindCoordinatorRequest{Key: group, KeyType: kafka.CoordinatorKeyTypeConsumer})
		cancel()
		if err == nil && resp.Error == nil && resp.Coordinator != nil && resp.Coordinator.NodeID != not {
			return resp.Coordinator.NodeID
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s: no coordinator after 30 s (%v)", group, err)
		}
	}
}

// WaitInSync waits (at most limit) until every partition of every topic, internal ones included, has
// all its replicas in sync, as a rolling restart does before it stops the next broker. It returns how
// long that took.
func (c *Cluster) WaitInSync(t testing.TB, limit time.Duration) time.Duration {
	t.Helper()
	began := time.Now()
	var behind []string
	for deadline := began.Add(limit); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		md, err := c.Client().Metadata(ctx, &kafka.MetadataRequest{})
		cancel()
		if err != nil {
			continue
		}
		behind = behind[:0]
		for _, tp := range md.Topics {
			for _, p := range tp.Partitions {
				if len(p.Isr) < len(p.Replicas) || p.Leader.Host == "" {
					behind = append(behind, fmt.Sprintf("%s/%d isr %d of %d", tp.Name, p.ID, len(p.Isr), len(p.Replicas)))
				}
			}
		}
		if len(behind) == 0 && len(md.Brokers) == 3 {
			return time.Since(began)
		}
	}
	t.Fatalf("replicas not in sync after %v: %v", limit, behind)
	return 0
}

// Tool runs a Kafka tool class (ConfigCommand, TopicCommand, ...) from the cluster's jars and returns
// its output.
func (c *Cluster) Tool(t testing.TB, class string, args ...string) string {
	t.Helper()
	return c.script(t, append([]string{"tool", class}, args...)...)
}

func (c *Cluster) script(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(RepoRoot(t), "scripts", "kafka-cluster.sh"), args...)
	cmd.Env = c.env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kafka-cluster.sh %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}
