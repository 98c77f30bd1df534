package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/cimstream/cimstream/internal/config"
)

// dlqCommand runs `cimstream dlq ...` under a small cobra root with the common flags, until the whole
// CLI is a cobra command tree; then the root provides them and this file goes.
func dlqCommand(args []string, stdout, stderr io.Writer) int {
	root := &cobra.Command{Use: "cimstream", SilenceUsage: true, SilenceErrors: true}
	pf := root.PersistentFlags()
	path := pf.String("config", "", "YAML configuration file")
	sets := pf.StringArray("set", nil, "KEY=VALUE for any configuration key (repeatable)")
	brokers := pf.String("brokers", "", "kafka.brokers, comma-separated")
	level := pf.String("log-level", "", "debug, info, warn or error")
	format := pf.String("log-format", "", "json or console")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return dlqUsageError{err} })
	loader := func(*cobra.Command) (config.Config, error) {
		settings := append([]string(nil), *sets...)
		for key, v := range map[string]string{"kafka.brokers": *brokers, "log.level": *level, "log.format": *format} {
			if v != "" {
				settings = append(settings, key+"="+v)
			}
		}
		return config.Load(*path, os.Environ(), settings)
	}
	root.AddCommand(newDLQCommand(loader))
	root.SetArgs(append([]string{"dlq"}, args...))
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err != nil {
		fmt.Fprintf(stderr, "cimstream dlq: %s\n", oneLine(err))
	}
	return dlqExitCode(err)
}
