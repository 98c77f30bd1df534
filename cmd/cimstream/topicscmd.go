package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkaedge/topics"
)

func newTopicsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "topics",
		Short: "Create the topics cimstream needs, and check them against the configuration",
		Long:  "Create the topics the configuration names, with the settings cimstream needs, and compare what the cluster has with it.",
		Example: `  cimstream topics create --config cimstream.yaml
  cimstream topics check --config cimstream.yaml`,
		RunE: groupRun,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "create",
		Short: "Create every topic the service needs (safe to run twice)",
		Long: `Create every topic the configuration needs that the cluster lacks: partitions from topics.partitions,
replication from topics.replicationFactor, and a compacted sessions changelog. Existing topics are left as
they are. Then print what the cluster has for each topic next to what is configured, as topics check does,
and flag every difference (exit status 1 when topics the service would refuse differ).`,
		Example: `  cimstream topics create --config cimstream.yaml
  cimstream topics create --brokers 127.0.0.1:9092 --set topics.partitions=12`,
		Args: argsUsage(cobra.NoArgs),
		RunE: withConfig(func(cmd *cobra.Command, _ []string, cfg config.Config) error {
			return topicsCommand(cfg, true, cmd.OutOrStdout())
		}),
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "check",
		Short: "Compare the topics on the cluster with the configuration",
		Long: `Print, for every topic the configuration needs, what the cluster has (partitions, replication factor,
min.insync.replicas, cleanup.policy, max.message.bytes) next to what is configured, and list every
difference. A min.insync.replicas that cannot protect acknowledged writes is flagged: 1 with replication
factor 3 or more (an acknowledged write may be on one broker only), or above the replication factor (no
write is ever acknowledged). Differences that would corrupt session state (a sessions changelog whose
partition count differs from the repartition topic's, or that is not compacted) are those cimstream run
refuses to start with; run logs the others as warnings.

Exit status: 0 every topic as configured, 1 a topic missing or different, 2 usage error.`,
		Example: `  cimstream topics check --config cimstream.yaml
  cimstream topics check --brokers kafka-0:9092 --set topics.partitions=12 --set topics.replicationFactor=3`,
		Args: argsUsage(cobra.NoArgs),
		RunE: withConfig(func(cmd *cobra.Command, _ []string, cfg config.Config) error {
			return topicsCommand(cfg, false, cmd.OutOrStdout())
		}),
	})
	return cmd
}

// connect builds the client factory (TLS and SASL from the configuration) and checks, within ctx, that
// the cluster answers.
func connect(ctx context.Context, cfg config.Config) (*kafkaclient.Factory, error) {
	factory, err := kafkaclient.New(cfg.Kafka)
	if err != nil {
		return nil, err
	}
	if _, err := factory.Ping(ctx); err != nil {
		return nil, err
	}
	return factory, nil
}

// createTopics creates the missing topics without printing a report (for dev).
func createTopics(cfg config.Config) error {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Kafka.RequestTimeout)
	defer cancel()
	factory, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	_, err = topics.Create(ctx, factory.Client(), topics.Required(cfg))
	return err
}

// topicsCommand is `topics create` (create first) and `topics check`: the cluster's topics next to the
// configuration, every difference flagged.
func topicsCommand(cfg config.Config, create bool, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*cfg.Kafka.RequestTimeout)
	defer cancel()
	factory, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	specs := topics.Required(cfg)
	created := map[string]bool{}
	if create {
		results, err := topics.Create(ctx, factory.Client(), specs)
		if err != nil {
			return err
		}
		for _, r := range results {
			created[r.Spec.Name] = r.Created
		}
	}
	reports, err := topics.Describe(ctx, factory.Client(), specs, cfg.Inbound.MaxMessageBytes)
	if err != nil {
		return err
	}
	exists := map[string]bool{}
	for _, r := range reports {
		exists[r.Spec.Name] = r.Actual.Exists
	}
	var state error
	// The state check is about topics that exist; missing ones are reported as missing.
	if cfg.Inbound.Enabled && exists[cfg.Topics.Sessions] && exists[cfg.Topics.Repartition] {
		state = topics.CheckState(ctx, factory.Client(), cfg.Topics.Sessions, cfg.Topics.Repartition)
		if state != nil && !errors.Is(state, topics.ErrStateTopics) {
			return state
		}
	}
	differences := writeTopicReports(stdout, reports, create, created)
	if state != nil {
		fmt.Fprintf(stdout, "cimstream run refuses to start: %v\n", state)
		return silentExit(1)
	}
	if differences > 0 && !create {
		return silentExit(1)
	}
	return nil
}

// orUnknown is a setting the cluster reported, or "?" when it did not say (0).
func orUnknown(n int64) string {
	if n <= 0 {
		return "?"
	}
	return strconv.FormatInt(n, 10)
}

// writeTopicReports prints one row per topic (have, and what is configured where it differs) and then
// every difference; it returns how many there are.
func writeTopicReports(w io.Writer, reports []topics.Report, create bool, created map[string]bool) int {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "TOPIC\tPARTITIONS\tREPLICATION\tMIN.INSYNC\tCLEANUP.POLICY\tMAX.MESSAGE.BYTES\tPURPOSE"
	if create {
		header = "STATE\t" + header
	}
	fmt.Fprintln(tw, header)
	total := 0
	for _, r := range reports {
		total += len(r.Differences)
		row := ""
		if create {
			row = "exists\t"
			if created[r.Spec.Name] {
				row = "created\t"
			}
		}
		if !r.Actual.Exists {
			row += fmt.Sprintf("%s\tmissing (configured %d)\t(configured %d)\t-\t(configured %s)\t-\t%s", r.Spec.Name, r.Spec.Partitions,
				r.Spec.ReplicationFactor, topics.WantCleanupPolicy(r.Spec), r.Spec.Purpose)
			fmt.Fprintln(tw, row)
			continue
		}
		diff := map[string]topics.Difference{}
		for _, d := range r.Differences {
			diff[d.Setting] = d
		}
		cell := func(setting, have string) string {
			if d, ok := diff[setting]; ok {
				return have + " (configured " + d.Want + ") !"
			}
			return have
		}
		row += fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s", r.Spec.Name,
			cell("partitions", strconv.Itoa(r.Actual.Partitions)),
			cell("replication factor", strconv.Itoa(r.Actual.ReplicationFactor)),
			cell("min.insync.replicas", orUnknown(int64(r.Actual.MinInsyncReplicas))),
			cell("cleanup.policy", r.Actual.CleanupPolicy),
			cell("max.message.bytes", orUnknown(r.Actual.MaxMessageBytes)), r.Spec.Purpose)
		fmt.Fprintln(tw, row)
	}
	_ = tw.Flush()
	if total == 0 {
		fmt.Fprintf(w, "every topic as configured (%d topics)\n", len(reports))
		return 0
	}
	fmt.Fprintf(w, "%d difference(s):\n", total)
	for _, r := range reports {
		for _, d := range r.Differences {
			fmt.Fprintf(w, "  %s\n", d)
		}
	}
	return total
}
