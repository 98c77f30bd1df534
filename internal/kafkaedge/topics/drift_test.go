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
