package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkaedge/topics"
)

func newTopicsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "topics",
		Short:   "Create the topics cimstream needs",
		Long:    "Create the topics the configuration names, with the settings cimstream needs.",
		Example: `  cimstream topics create --config cimstream.yaml`,
		RunE:    groupRun,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "create",
		Short: "Create every topic the service needs (safe to run twice)",
		Long: `Create every topic the configuration needs that the cluster lacks: partitions from topics.partitions,
replication from topics.replicationFactor, and a compacted sessions changelog. Existing topics are left as
they are.`,
		Example: `  cimstream topics create --config cimstream.yaml
  cimstream topics create --brokers 127.0.0.1:9092 --set topics.partitions=12`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			return createTopics(cfg, cmd.OutOrStdout())
		},
	})
	return cmd
}

func createTopics(cfg config.Config, stdout io.Writer) error {
	factory, err := kafkaclient.New(cfg.Kafka)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Kafka.RequestTimeout)
	defer cancel()
	if _, err := factory.Ping(ctx); err != nil {
		return err
	}
	results, err := topics.Create(ctx, factory.Client(), topics.Required(cfg))
	for _, r := range results {
		state := "exists"
		if r.Created {
			state = "created"
		}
		fmt.Fprintf(stdout, "%-8s %-32s partitions=%d replication=%d  %s\n", state, r.Spec.Name, r.Spec.Partitions, r.Spec.ReplicationFactor, r.Spec.Purpose)
	}
	return err
}
