// Command cimstream carries CIM messages between contact-center channel connectors and the Customer
// Channel Manager over Kafka. Run `cimstream help` for the subcommands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkaedge/topics"
	"github.com/cimstream/cimstream/internal/logging"
	"github.com/cimstream/cimstream/internal/service"
)

const usage = `cimstream carries CIM messages between channel connectors and the CCM over Kafka.

Usage:
  cimstream run            [common flags]   run the service
  cimstream dev [--port N] [common flags]   run it with an in-process broker on 127.0.0.1 (no Java, no Docker)
  cimstream topics create  [common flags]   create every topic the service needs (safe to run twice)
  cimstream config print   [common flags]   print the effective configuration, secrets masked
  cimstream config keys                     list every configuration key and its environment variable
  cimstream routes test [common flags] FILE|-...
                                            show where each outbound message would go and why
                                            (exit 0 all accepted, 1 some would fail, 2 error)
  cimstream validate [--direction inbound|outbound] [--format json|text] [FILE|-]...
                                            validate CIM messages (exit 0 valid, 1 invalid, 2 error)
  cimstream loadgen [--direction inbound|outbound] [--topics LIST] [--rate R] [--count N|--duration D]
                   [--size B] [--customers N] [--keyed] [--invalid SHARE] [--measure OUTPUT-TOPIC] [--json]
                                            produce realistic CIM traffic; --measure reports end-to-end latency
  cimstream dlq inspect [filters] [--list] [common flags]
                                            count dead letters by code, source topic, pipeline and age, or list them
  cimstream dlq replay [filters] [--to TOPIC] [--dry-run] [common flags]
                                            re-produce dead letters, re-validated, once only (cimstream dlq --help)
  cimstream version

Common flags:
  --config FILE        YAML configuration file
  --brokers LIST       kafka.brokers, comma-separated
  --log-level LEVEL    debug, info, warn, error
  --log-format FORMAT  json or console
  --set KEY=VALUE      set any configuration key (repeatable), e.g. --set inbound.sessionIdleTimeout=5m

Precedence: defaults < config file < CIMSTREAM_* environment variables < flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is main without the process exit, so tests can call it.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "cimstream: %s\n", oneLine(err))
		return 1
	}
	switch args[0] {
	case "run":
		cfg, err := loadConfig("run", args[1:], stderr)
		if err != nil {
			return usageOrFail(err, fail)
		}
		if err := runService(cfg); err != nil {
			return fail(err)
		}
		return 0
	case "topics":
		if len(args) < 2 || args[1] != "create" {
			fmt.Fprint(stderr, "usage: cimstream topics create [common flags]\n")
			return 2
		}
		cfg, err := loadConfig("topics create", args[2:], stderr)
		if err != nil {
			return usageOrFail(err, fail)
		}
		if err := createTopics(cfg, stdout); err != nil {
			return fail(err)
		}
		return 0
	case "config":
		if len(args) >= 2 && args[1] == "keys" {
			for _, k := range config.EnvKeys() {
				fmt.Fprintf(stdout, "%-40s %s\n", k[0], k[1])
			}
			return 0
		}
		if len(args) < 2 || args[1] != "print" {
			fmt.Fprint(stderr, "usage: cimstream config print|keys [common flags]\n")
			return 2
		}
		cfg, err := loadConfig("config print", args[2:], stderr)
		if err != nil {
			return usageOrFail(err, fail)
		}
		out, err := cfg.YAML()
		if err != nil {
			return fail(err)
		}
		_, _ = stdout.Write(out)
		return 0
	case "routes":
		return routesCommand(args[1:], stdin, stdout, stderr)
	case "validate":
		return validateCommand(args[1:], stdin, stdout, stderr)
	case "dev":
		return devCommand(args[1:], stdout, stderr)
	case "loadgen":
		return loadgenCommand(args[1:], stdout, stderr)
	case "dlq":
		return dlqCommand(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "cimstream", service.Version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "cimstream: unknown command %q\n\n%s", args[0], usage)
	return 2
}

var errUsage = errors.New("usage")

func usageOrFail(err error, fail func(error) int) int {
	if errors.Is(err, errUsage) {
		return 2
	}
	return fail(err)
}

// loadConfig parses the common flags and loads the configuration they point at.
func loadConfig(name string, args []string, stderr io.Writer) (config.Config, error) {
	cfg, rest, err := loadConfigArgs(name, args, stderr)
	if err == nil && len(rest) > 0 {
		fmt.Fprintf(stderr, "cimstream %s: unexpected argument %q\n", name, rest[0])
		return config.Config{}, errUsage
	}
	return cfg, err
}

// loadConfigArgs is loadConfig for commands that take arguments after the flags; it returns them.
func loadConfigArgs(name string, args []string, stderr io.Writer) (config.Config, []string, error) {
	fs := flag.NewFlagSet("cimstream "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "YAML configuration file")
	brokers := fs.String("brokers", "", "kafka.brokers, comma-separated")
	level := fs.String("log-level", "", "debug, info, warn or error")
	format := fs.String("log-format", "", "json or console")
	var sets multiFlag
	fs.Var(&sets, "set", "KEY=VALUE for any configuration key (repeatable)")
	if err := fs.Parse(args); err != nil {
		return config.Config{}, nil, errUsage
	}
	settings := []string(sets)
	for key, v := range map[string]string{"kafka.brokers": *brokers, "log.level": *level, "log.format": *format} {
		if v != "" {
			settings = append(settings, key+"="+v)
		}
	}
	cfg, err := config.Load(*path, os.Environ(), settings)
	return cfg, fs.Args(), err
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func runService(cfg config.Config) error {
	log, err := logging.New(cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	logStartup(log, cfg)
	svc, err := service.New(cfg, log)
	if err != nil {
		return err
	}
	if err := addPipelines(svc, cfg, log); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := svc.Run(ctx); err != nil {
		log.Error("stopped with an error", errField(err))
		return err
	}
	log.Info("stopped cleanly")
	return nil
}

func createTopics(cfg config.Config, stdout io.Writer) error {
	svcLog, err := logging.New(cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return err
	}
	svc, err := service.New(cfg, svcLog)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Kafka.RequestTimeout)
	defer cancel()
	if _, err := svc.Kafka().Ping(ctx); err != nil {
		return err
	}
	results, err := topics.Create(ctx, svc.Kafka().Client(), topics.Required(cfg))
	for _, r := range results {
		state := "exists"
		if r.Created {
			state = "created"
		}
		fmt.Fprintf(stdout, "%-8s %-32s partitions=%d replication=%d  %s\n", state, r.Spec.Name, r.Spec.Partitions, r.Spec.ReplicationFactor, r.Spec.Purpose)
	}
	return err
}

// oneLine keeps CLI errors to a single line even when several problems were joined.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
