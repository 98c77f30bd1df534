// Package topics knows which topics cimstream needs, creates them with the right settings, and checks
// that they exist before the service starts.
package topics

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/session"
)

// Spec is one topic and the settings it is created with.
type Spec struct {
	Name              string
	Partitions        int
	ReplicationFactor int
	Configs           map[string]string
	// Purpose says in a few words what the topic is for; shown by `topics create`.
	Purpose string
	// MinMessageBytes is the largest record cimstream writes to it when that is more than the largest
	// message it accepts (the sessions changelog: a key's state); 0 otherwise.
	MinMessageBytes int
}

// Required lists the topics cimstream reads or writes under cfg.
func Required(cfg config.Config) []Spec {
	t := cfg.Topics
	plain := func(name, purpose string) Spec {
		return Spec{Name: name, Partitions: t.Partitions, ReplicationFactor: t.ReplicationFactor, Purpose: purpose}
	}
	minISR := strconv.Itoa(max(1, t.ReplicationFactor-1))
	specs := []Spec{
		plain(t.DeadLetter, "dead letters with their reasons"),
		plain(t.Notifications, "delivery notifications to the CCM"),
	}
	if cfg.Inbound.Enabled {
		specs = append(specs,
			plain(t.CCMInbound, "enriched inbound messages for the CCM"),
			plain(t.Repartition, "internal: inbound messages keyed by customer"),
			Spec{
				Name: t.Sessions, Partitions: t.Partitions, ReplicationFactor: t.ReplicationFactor,
				Purpose: "compacted changelog of inbound sessions",
				// A key's state, written once per batch: refused for its size, the batch's decisions
				// for that key would be lost.
				MinMessageBytes: session.MaxStateBytes + config.EnrichmentHeadroom,
				// Compaction keeps the latest state per session key; tombstones of ended sessions are
				// removed after a day, long enough for any restore that started before them.
				Configs: map[string]string{
					"cleanup.policy":            "compact",
					"min.insync.replicas":       minISR,
					"delete.retention.ms":       "86400000",
					"segment.ms":                "3600000",
					"min.cleanable.dirty.ratio": "0.1",
				},
			})
		if events := cfg.SessionEventsTopic(); events != "" && events != t.CCMInbound {
			specs = append(specs, plain(events, "session lifecycle events for the CCM"))
		}
		for _, name := range append(append([]string{}, t.Inbound...), t.InboundChannels...) {
			specs = append(specs, plain(name, "connector input"))
		}
	}
	if cfg.Outbound.Enabled {
		specs = append(specs, plain(t.CCMOutbound, "outbound messages from the CCM"))
		for _, ch := range cfg.ChannelMap() { // several ids may share a channel: dedupe keeps one
			specs = append(specs, plain(config.OutboundTopic(ch), "connector output"))
		}
		for _, r := range cfg.Outbound.Routes {
			for _, d := range r.Destinations {
				specs = append(specs, plain(d, "connector output (route "+r.Name+")"))
			}
		}
	}
	if cfg.Ingress.Address != "" {
		for _, ch := range cfg.IngressChannels() {
			specs = append(specs, plain(config.InboundTopic(ch), "connector input (HTTP ingress)"))
		}
	}
	for _, w := range cfg.Egress.Webhooks {
		specs = append(specs, plain(config.OutboundTopic(w.Channel), "webhook channel input (egress)"))
	}
	return dedupe(specs)
}

// OutboundTopic is config.OutboundTopic, named here for the callers that list topics.
func OutboundTopic(channel string) string { return config.OutboundTopic(channel) }

func dedupe(specs []Spec) []Spec {
	seen := map[string]bool{}
	out := specs[:0]
	for _, s := range specs {
		if !seen[s.Name] {
			seen[s.Name] = true
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b Spec) int { return strings.Compare(a.Name, b.Name) }) // names are unique by now
	return out
}

// Admin is the part of kafka.Client that topic management uses.
type Admin interface {
	Metadata(ctx context.Context, req *kafka.MetadataRequest) (*kafka.MetadataResponse, error)
	CreateTopics(ctx context.Context, req *kafka.CreateTopicsRequest) (*kafka.CreateTopicsResponse, error)
}

// Existing returns the names of the topics the cluster has.
func Existing(ctx context.Context, admin Admin) (map[string]kafka.Topic, error) {
	md, err := admin.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	out := make(map[string]kafka.Topic, len(md.Topics))
	for _, t := range md.Topics {
		if t.Error == nil {
			out[t.Name] = t
		}
	}
	return out, nil
}

// ErrMissing is returned by Check when topics are absent.
var ErrMissing = errors.New("topics missing")

// Check fails with a message naming the absent topics and the command that creates them.
func Check(ctx context.Context, admin Admin, specs []Spec) error {
	existing, err := Existing(ctx, admin)
	if err != nil {
		return err
	}
	var missing []string
	for _, s := range specs {
		if _, ok := existing[s.Name]; !ok {
			missing = append(missing, s.Name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s (create them with: cimstream topics create)", ErrMissing, strings.Join(missing, ", "))
	}
	return nil
}

// Result says what Create did with one topic.
type Result struct {
	Spec    Spec
	Created bool
}

// Create makes every topic that does not exist yet; existing topics are left as they are, so running it
// twice is safe.
func Create(ctx context.Context, admin Admin, specs []Spec) ([]Result, error) {
	existing, err := Existing(ctx, admin)
	if err != nil {
		return nil, err
	}
	var req kafka.CreateTopicsRequest
	var results []Result
	for _, s := range specs {
		_, ok := existing[s.Name]
		results = append(results, Result{Spec: s, Created: !ok})
		if ok {
			continue
		}
		tc := kafka.TopicConfig{Topic: s.Name, NumPartitions: s.Partitions, ReplicationFactor: s.ReplicationFactor}
		for _, k := range slices.Sorted(maps.Keys(s.Configs)) {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: s.Configs[k]})
		}
		req.Topics = append(req.Topics, tc)
	}
	if len(req.Topics) == 0 {
		return results, nil
	}
	resp, err := admin.CreateTopics(ctx, &req)
	if err != nil {
		return nil, fmt.Errorf("create topics: %w", err)
	}
	var errs []error
	for name, terr := range resp.Errors {
		if terr != nil && !errors.Is(terr, kafka.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("create topic %s: %w", name, terr))
		}
	}
	return results, errors.Join(errs...)
}

// StateAdmin is what CheckState asks of the cluster.
type StateAdmin interface {
	Metadata(ctx context.Context, req *kafka.MetadataRequest) (*kafka.MetadataResponse, error)
	DescribeConfigs(ctx context.Context, req *kafka.DescribeConfigsRequest) (*kafka.DescribeConfigsResponse, error)
}

// ErrStateTopics is returned by CheckState when the session changelog cannot hold the state correctly.
var ErrStateTopics = errors.New("session state topics unusable")

// CheckState refuses a sessions changelog whose partition count differs from the repartition topic's
// (state would be written into another partition than its input's and restored by the wrong owner) or
// that is not compacted (restores would grow without bound and tombstones would not forget).
func CheckState(ctx context.Context, admin StateAdmin, changelog, repartition string) error {
	md, err := admin.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{changelog, repartition}})
	if err != nil {
		return fmt.Errorf("describe %s and %s: %w", changelog, repartition, err)
	}
	counts := map[string]int{}
	for _, t := range md.Topics {
		if t.Error == nil {
			counts[t.Name] = len(t.Partitions)
		}
	}
	var problems []string
	if counts[changelog] != counts[repartition] {
		problems = append(problems, fmt.Sprintf("%s has %d partitions but %s has %d; they must be equal",
			changelog, counts[changelog], repartition, counts[repartition]))
	}
	resp, err := admin.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{
		{ResourceType: kafka.ResourceTypeTopic, ResourceName: changelog, ConfigNames: []string{"cleanup.policy"}},
	}})
	if err != nil {
		return fmt.Errorf("describe configs of %s: %w", changelog, err)
	}
	policy := ""
	for _, r := range resp.Resources {
		if r.Error != nil {
			// A broker that does not know the topic yet (just created, on another node of a cluster) says
			// nothing of its policy: not a misconfiguration.
			return fmt.Errorf("describe configs of %s: %w", changelog, r.Error)
		}
		for _, e := range r.ConfigEntries {
			if e.ConfigName == "cleanup.policy" {
				policy = e.ConfigValue
			}
		}
	}
	if !strings.Contains(policy, "compact") {
		problems = append(problems, fmt.Sprintf("%s has cleanup.policy=%q; it must include compact", changelog, policy))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrStateTopics, strings.Join(problems, "; "))
	}
	return nil
}
