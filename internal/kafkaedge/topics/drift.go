package topics

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/segmentio/kafka-go"
)

// Actual is what the cluster has for one topic.
type Actual struct {
	Exists            bool
	Partitions        int
	ReplicationFactor int
	CleanupPolicy     string
	// MinInsyncReplicas is the topic's min.insync.replicas (its own or the broker's default); 0 when the
	// broker did not say.
	MinInsyncReplicas int
	// MaxMessageBytes is the topic's max.message.bytes; 0 when the broker did not say.
	MaxMessageBytes int64
}

// Difference is one setting of a topic that differs from what the configuration asks.
type Difference struct {
	Topic, Setting string
	Have, Want     string
	// Why says what the difference does, when that is not plain from the setting; may be empty.
	Why string
}

func (d Difference) String() string {
	s := fmt.Sprintf("%s: %s is %s, configured %s", d.Topic, d.Setting, d.Have, d.Want)
	if d.Why != "" {
		s += " (" + d.Why + ")"
	}
	return s
}

// Report compares one required topic with the cluster.
type Report struct {
	Spec        Spec
	Actual      Actual
	Differences []Difference
}

// Wanted settings that are not in a Spec.
const (
	// DefaultCleanupPolicy is what a topic created without cleanup.policy gets.
	DefaultCleanupPolicy = "delete"
)

// WantCleanupPolicy is the cleanup.policy spec's topic should have.
func WantCleanupPolicy(spec Spec) string {
	if p, ok := spec.Configs["cleanup.policy"]; ok {
		return p
	}
	return DefaultCleanupPolicy
}

// Compare lists how actual differs from spec. minMessageBytes is the largest message cimstream accepts
// (inbound.maxMessageBytes): a topic whose max.message.bytes is below it cannot hold every valid message.
func Compare(spec Spec, actual Actual, minMessageBytes int) []Difference {
	if !actual.Exists {
		return []Difference{{Topic: spec.Name, Setting: "topic", Have: "missing", Want: "present (cimstream topics create)"}}
	}
	var out []Difference
	add := func(setting, have, want string) {
		out = append(out, Difference{Topic: spec.Name, Setting: setting, Have: have, Want: want})
	}
	if actual.Partitions != spec.Partitions {
		add("partitions", strconv.Itoa(actual.Partitions), strconv.Itoa(spec.Partitions))
	}
	if actual.ReplicationFactor != spec.ReplicationFactor {
		add("replication factor", strconv.Itoa(actual.ReplicationFactor), strconv.Itoa(spec.ReplicationFactor))
	}
	if want := WantCleanupPolicy(spec); !samePolicy(actual.CleanupPolicy, want) {
		add("cleanup.policy", cmp.Or(actual.CleanupPolicy, "unknown"), want)
	}
	if want, why, ok := InsyncProblem(actual.ReplicationFactor, actual.MinInsyncReplicas); !ok {
		out = append(out, Difference{Topic: spec.Name, Setting: "min.insync.replicas", Have: strconv.Itoa(actual.MinInsyncReplicas), Want: want, Why: why})
	}
	if actual.MaxMessageBytes > 0 && actual.MaxMessageBytes < int64(minMessageBytes) {
		add("max.message.bytes", strconv.FormatInt(actual.MaxMessageBytes, 10), fmt.Sprintf("at least %d (inbound.maxMessageBytes)", minMessageBytes))
	} else if actual.MaxMessageBytes > 0 && actual.MaxMessageBytes < int64(spec.MinMessageBytes) {
		add("max.message.bytes", strconv.FormatInt(actual.MaxMessageBytes, 10), fmt.Sprintf("at least %d (a session state at its cap)", spec.MinMessageBytes))
	}
	return out
}

// InsyncProblem says whether min.insync.replicas minISR can protect the writes cimstream acknowledges
// (acks=all) on a topic with replication factor rf; when it cannot, want says what it should be and why
// what it is does not protect them.
//   - minISR above rf: no write can ever be acknowledged (NOT_ENOUGH_REPLICAS on every produce);
//   - minISR 1 with rf 3 or more: the leader alone may acknowledge a write, and losing that one broker
//     loses it, although the topic has replicas to spare. With 2 (of 3), an acknowledged write is on
//     two brokers and survives losing either.
//
// Replication factors 1 and 2 with min.insync.replicas 1 are a choice (a test cluster, or writes that
// go on with one of two brokers down), not flagged. 0 (unknown) is never flagged.
func InsyncProblem(rf, minISR int) (want, why string, ok bool) {
	switch {
	case minISR <= 0 || rf <= 0:
		return "", "", true
	case minISR > rf:
		return fmt.Sprintf("at most %d, the replication factor", rf), "above it every acks=all write fails with NOT_ENOUGH_REPLICAS", false
	case minISR < 2 && rf >= 3:
		return fmt.Sprintf("at least 2 with replication factor %d", rf), "with 1 an acknowledged write may be on one broker only, and lost with it", false
	}
	return "", "", true
}

// samePolicy compares cleanup policies as sets: "compact,delete" equals "delete,compact".
func samePolicy(a, b string) bool {
	set := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				m[p] = true
			}
		}
		return m
	}
	return maps.Equal(set(a), set(b))
}

// Describe reads what the cluster has for each spec (partitions, replication factor, cleanup.policy,
// max.message.bytes, min.insync.replicas) and compares it with the spec.
func Describe(ctx context.Context, admin StateAdmin, specs []Spec, minMessageBytes int) ([]Report, error) {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	md, err := admin.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
	if err != nil {
		return nil, fmt.Errorf("describe topics: %w", err)
	}
	actual := map[string]*Actual{}
	var existing []kafka.DescribeConfigRequestResource
	for _, t := range md.Topics {
		if t.Error != nil {
			continue
		}
		a := &Actual{Exists: true, Partitions: len(t.Partitions)}
		for _, p := range t.Partitions {
			a.ReplicationFactor = max(a.ReplicationFactor, len(p.Replicas))
		}
		actual[t.Name] = a
		existing = append(existing, kafka.DescribeConfigRequestResource{ResourceType: kafka.ResourceTypeTopic, ResourceName: t.Name,
			ConfigNames: []string{"cleanup.policy", "max.message.bytes", "min.insync.replicas"}})
	}
	if len(existing) > 0 {
		resp, err := admin.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: existing})
		if err != nil {
			return nil, fmt.Errorf("describe topic configs: %w", err)
		}
		for _, r := range resp.Resources {
			a := actual[r.ResourceName]
			if a == nil || r.Error != nil {
				continue
			}
			for _, e := range r.ConfigEntries {
				switch e.ConfigName {
				case "cleanup.policy":
					a.CleanupPolicy = e.ConfigValue
				case "max.message.bytes":
					a.MaxMessageBytes, _ = strconv.ParseInt(e.ConfigValue, 10, 64)
				case "min.insync.replicas":
					a.MinInsyncReplicas, _ = strconv.Atoi(e.ConfigValue)
				}
			}
		}
	}
	reports := make([]Report, len(specs))
	for i, s := range specs {
		var a Actual
		if p := actual[s.Name]; p != nil {
			a = *p
		}
		reports[i] = Report{Spec: s, Actual: a, Differences: Compare(s, a, minMessageBytes)}
	}
	return reports, nil
}
