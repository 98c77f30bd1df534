package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/service"
)

const rootLong = `cimstream carries CIM messages between contact-center channel connectors and the Customer Channel
Manager (CCM) over Kafka: inbound it validates and enriches what connectors produce, outbound it routes the
CCM's replies to connector topics and reports delivery.

Every command reads the configuration the same way:
  defaults < --config FILE < CIMSTREAM_* environment variables < flags (--brokers, --log-level,
  --log-format, --set KEY=VALUE).
'cimstream config keys' lists every key and its environment variable; docs/configuration.md explains them.`

const rootExample = `  # try it without Java or Docker: an in-process broker on 127.0.0.1:9092
  cimstream dev

  # against a cluster
  cimstream topics create --config cimstream.yaml
  cimstream run --config cimstream.yaml

  # check messages in CI
  cimstream validate --direction outbound replies.ndjson`

// Flag names shared by every command (persistent on the root command).
const (
	flagConfig    = "config"
	flagSet       = "set"
	flagBrokers   = "brokers"
	flagLogLevel  = "log-level"
	flagLogFormat = "log-format"
)

// newRootCommand builds the command tree; stdin, stdout and stderr are the process's in main and buffers
// in tests.
func newRootCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:     "cimstream",
		Short:   "Carry CIM messages between channel connectors and the CCM over Kafka",
		Long:    rootLong,
		Example: rootExample,
		Version: service.Version,
		// Errors are printed once, by execute, in cimstream's own one-line form.
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("cimstream {{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })

	pf := root.PersistentFlags()
	pf.String(flagConfig, "", "YAML configuration `file`")
	pf.StringArray(flagSet, nil, "set a configuration `KEY=VALUE` (repeatable), e.g. --set inbound.sessionIdleTimeout=5m")
	pf.String(flagBrokers, "", "kafka.brokers: bootstrap addresses, comma-separated `host:port` list")
	pf.String(flagLogLevel, "", "log.level: debug, info, warn or error")
	pf.String(flagLogFormat, "", "log.format: json or console")
	_ = root.MarkPersistentFlagFilename(flagConfig, "yaml", "yml")
	_ = root.RegisterFlagCompletionFunc(flagSet, completeSetKeys)
	_ = root.RegisterFlagCompletionFunc(flagLogLevel, fixedCompletion("debug", "info", "warn", "error"))
	_ = root.RegisterFlagCompletionFunc(flagLogFormat, fixedCompletion("json", "console"))
	_ = root.RegisterFlagCompletionFunc(flagBrokers, cobra.NoFileCompletions)

	root.AddCommand(
		newRunCommand(),
		newDevCommand(),
		newTopicsCommand(),
		newConfigCommand(),
		newRoutesCommand(),
		newValidateCommand(),
		newLoadgenCommand(),
		newDLQCommand(loadConfig),
		newVersionCommand(),
	)
	strictHelp(root)
	return root
}

// strictHelp makes `cimstream help TOPIC` a usage error (exit 2) when TOPIC names no command; cobra's own
// help command prints "Unknown help topic" and exits 0.
func strictHelp(root *cobra.Command) {
	root.InitDefaultHelpCmd()
	help, _, err := root.Find([]string{"help"})
	if err != nil || help == root {
		return
	}
	show := help.Run
	help.Run = nil
	help.RunE = func(c *cobra.Command, args []string) error {
		if cmd, rest, err := c.Root().Find(args); err != nil || cmd == nil || len(rest) > 0 {
			return usagef("unknown help topic %q; 'cimstream help' lists the commands", strings.Join(args, " "))
		}
		show(c, args)
		return nil
	}
}

// loadConfig loads the configuration named by the common flags of cmd, over the defaults and the
// CIMSTREAM_* environment. Every command that needs a configuration calls it, so they all read it alike.
func loadConfig(cmd *cobra.Command) (config.Config, error) {
	flags := cmd.Flags()
	path, _ := flags.GetString(flagConfig)
	settings, _ := flags.GetStringArray(flagSet)
	settings = append([]string{}, settings...)
	for name, key := range map[string]string{flagBrokers: "kafka.brokers", flagLogLevel: "log.level", flagLogFormat: "log.format"} {
		if f := flags.Lookup(name); f != nil && f.Changed {
			settings = append(settings, key+"="+f.Value.String())
		}
	}
	return config.Load(path, os.Environ(), settings)
}

// withConfig is a RunE that loads the configuration as every command does (loadConfig) and runs with it.
func withConfig(run func(cmd *cobra.Command, args []string, cfg config.Config) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		cfg, err := loadConfig(cmd)
		if err != nil {
			return err
		}
		return run(cmd, args, cfg)
	}
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version",
		Long:    "Print the version of this build (the same as --version).",
		Example: "  cimstream version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), "cimstream", service.Version)
			return nil
		},
	}
}

// groupRun makes a command that only holds subcommands runnable, so that an unknown subcommand is a usage
// error (cobra would print the help and exit 0) and the bare command prints its help.
func groupRun(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return cmd.Help()
}

// usageError is a mistake on the command line: exit status 2, with a pointer to --help.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// exitError ends the command with a status; when reported is true the command already said why.
type exitError struct {
	code     int
	err      error
	reported bool
}

func (e exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e exitError) Unwrap() error { return e.err }

// silentExit ends the command with code after it printed its own findings.
func silentExit(code int) error { return exitError{code: code, reported: true} }

// argsUsage wraps a cobra argument check so that its failure is a usage error.
func argsUsage(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// exitCode maps an error from the command tree to the process exit status and prints it: 0 success,
// 1 a failure at run time, 2 a usage error.
func exitCode(cmd *cobra.Command, err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		if !ee.reported {
			fmt.Fprintf(stderr, "cimstream: %s\n", oneLine(err))
		}
		return ee.code
	}
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		name := "cimstream"
		if cmd != nil {
			name = cmd.CommandPath()
		}
		fmt.Fprintf(stderr, "%s: %s\nRun '%s --help' for usage.\n", name, oneLine(err), name)
		return 2
	}
	fmt.Fprintf(stderr, "cimstream: %s\n", oneLine(err))
	return 1
}

// isCobraUsage recognises the one usage error cobra returns unwrapped, before any command runs: an unknown
// command on the root (flag and argument errors are wrapped as usageError by SetFlagErrorFunc and argsUsage).
func isCobraUsage(err error) bool {
	return strings.HasPrefix(err.Error(), "unknown command ")
}

// oneLine keeps CLI errors to a single line even when several problems were joined.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

func fixedCompletion(values ...string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeSetKeys offers every configuration key, followed by "=", for --set.
func completeSetKeys(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	var out []string
	for _, k := range config.Keys() {
		if strings.HasPrefix(k, toComplete) {
			out = append(out, k+"=")
		}
	}
	return out, cobra.ShellCompDirectiveNoSpace | cobra.ShellCompDirectiveNoFileComp
}
