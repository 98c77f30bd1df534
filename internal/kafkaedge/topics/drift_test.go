package topics

import (
	"strings"
	"testing"
)

func TestCompareFlagsEveryDifference(t *testing.T) {
	sessions := Spec{Name: "s", Partitions: 6, ReplicationFactor: 3, Configs: map[string]string{"cleanup.policy": "compact"}}
	plain := Spec{Name: "p", Partitions: 6, ReplicationFactor: 3}
	cases := []struct {
		name   string
		spec   Spec
		actual Actual
		want   []string
	}{
		{"as configured", plain, Actual{Exists: true, Partitions: 6, ReplicationFactor: 3, CleanupPolicy: "delete", MaxMessageBytes: 1048588}, nil},
		{"missing", plain, Actual{}, []string{"p: topic is missing"}},
		{"everything off", sessions, Actual{Exists: true, Partitions: 3, ReplicationFactor: 1, CleanupPolicy: "delete", MaxMessageBytes: 1000}, []string{
			"s: partitions is 3, configured 6", "s: replication factor is 1, configured 3", "s: cleanup.policy is delete, configured compact",
			"s: max.message.bytes is 1000, configured at least 1048576"}},
		{"compacted plain topic", plain, Actual{Exists: true, Partitions: 6, ReplicationFactor: 3, CleanupPolicy: "compact"}, []string{"p: cleanup.policy is compact, configured delete"}},
		{"min.insync.replicas 1 with replication factor 3", plain, Actual{Exists: true, Partitions: 6, ReplicationFactor: 3, CleanupPolicy: "delete", MinInsyncReplicas: 1},
			[]string{"p: min.insync.replicas is 1, configured at least 2 with replication factor 3"}},
		{"min.insync.replicas above the replication factor", plain, Actual{Exists: true, Partitions: 6, ReplicationFactor: 3, CleanupPolicy: "delete", MinInsyncReplicas: 4},
			[]string{"p: min.insync.replicas is 4, configured at most 3, the replication factor"}},
		{"min.insync.replicas 2 of 3", plain, Actual{Exists: true, Partitions: 6, ReplicationFactor: 3, CleanupPolicy: "delete", MinInsyncReplicas: 2}, nil},
		{"min.insync.replicas 3 of 3 (no write with a broker down, but none lost)", plain, Actual{Exists: true, Partitions: 6, ReplicationFactor: 3, CleanupPolicy: "delete", MinInsyncReplicas: 3}, nil},
		{"replication factor 1, min.insync.replicas 1", Spec{Name: "one", Partitions: 1, ReplicationFactor: 1},
			Actual{Exists: true, Partitions: 1, ReplicationFactor: 1, CleanupPolicy: "delete", MinInsyncReplicas: 1}, nil},
		{"replication factor 1, min.insync.replicas 2", Spec{Name: "one", Partitions: 1, ReplicationFactor: 1},
			Actual{Exists: true, Partitions: 1, ReplicationFactor: 1, CleanupPolicy: "delete", MinInsyncReplicas: 2},
			[]string{"one: min.insync.replicas is 2, configured at most 1"}},
		{"policy order does not matter", Spec{Name: "x", Partitions: 1, ReplicationFactor: 1, Configs: map[string]string{"cleanup.policy": "compact,delete"}},
			Actual{Exists: true, Partitions: 1, ReplicationFactor: 1, CleanupPolicy: "delete, compact"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Compare(c.spec, c.actual, 1<<20)
			if len(got) != len(c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			for i, d := range got {
				if !strings.HasPrefix(d.String(), c.want[i]) {
					t.Errorf("difference %d: %q, want %q", i, d, c.want[i])
				}
			}
		})
	}
}

// With a small inbound limit, the changelog must still take a key's state at its cap: it is written once
// per batch, and refused for its size the batch's decisions for the key would be lost.
func TestChangelogMustHoldAStateAtItsCap(t *testing.T) {
	sessions := Spec{Name: "s", Partitions: 1, ReplicationFactor: 1, Configs: map[string]string{"cleanup.policy": "compact"},
		MinMessageBytes: 327680}
	small := Actual{Exists: true, Partitions: 1, ReplicationFactor: 1, CleanupPolicy: "compact", MaxMessageBytes: 100000}
	got := Compare(sessions, small, 4096)
	if len(got) != 1 || !strings.HasPrefix(got[0].String(), "s: max.message.bytes is 100000, configured at least 327680 (a session state at its cap)") {
		t.Fatalf("got %v", got)
	}
	small.MaxMessageBytes = 327680
	if got := Compare(sessions, small, 4096); len(got) != 0 {
		t.Fatalf("a changelog that takes a state at its cap flagged: %v", got)
	}
}
