package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cimstream/cimstream/internal/config"
)

func newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show the effective configuration and the keys",
		Long:  "Show the configuration as cimstream would use it, and list the keys that can be set.",
		Example: `  cimstream config print --config cimstream.yaml --set topics.partitions=12
  cimstream config keys`,
		RunE: groupRun,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "print",
		Short: "Print the effective configuration, secrets masked",
		Long: `Print the configuration after defaults, the file, the CIMSTREAM_* environment and the flags, as YAML,
with secrets replaced by ********. Exit status 1 when the configuration is invalid (the error names the key).`,
		Example: `  cimstream config print --config cimstream.yaml
  CIMSTREAM_KAFKA_BROKERS=k1:9092 cimstream config print --set log.level=debug`,
		Args: argsUsage(cobra.NoArgs),
		RunE: withConfig(func(cmd *cobra.Command, _ []string, cfg config.Config) error {
			out, err := cfg.YAML()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		}),
	})
	cmd.AddCommand(&cobra.Command{
		Use:     "keys",
		Short:   "List every configuration key and its environment variable",
		Long:    "List every configuration key with the CIMSTREAM_* environment variable that sets it, sorted by key.",
		Example: "  cimstream config keys | grep sasl",
		Args:    argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, k := range config.EnvKeys() {
				fmt.Fprintf(cmd.OutOrStdout(), "%-40s %s\n", k[0], k[1])
			}
			return nil
		},
	})
	return cmd
}
