package main

import (
	"context"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/logging"
	"github.com/cimstream/cimstream/internal/service"
)

func newRunCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run the service against a Kafka cluster",
		Long: `Run the inbound and outbound pipelines, and the webhook channels of egress.webhooks, against the
configured Kafka cluster until SIGTERM or Ctrl-C, then drain and commit within shutdown.timeout.

At start-up it serves /healthz, /readyz and /metrics on admin.address, waits for the brokers (with backoff, up
to startup.timeout, readiness false meanwhile), checks that every topic exists and that the session topics can
hold the state, and warns about topics whose settings differ from the configuration.`,
		Example: `  cimstream run --config cimstream.yaml
  cimstream run --brokers kafka-0:9092,kafka-1:9092 --log-format console
  CIMSTREAM_KAFKA_SASL_PASSWORD=... cimstream run --config cimstream.yaml --set kafka.sasl.mechanism=SCRAM-SHA-512`,
		Args: argsUsage(cobra.NoArgs),
		RunE: withConfig(func(cmd *cobra.Command, _ []string, cfg config.Config) error {
			return runService(cfg)
		}),
	}
}

// runService runs the service until SIGTERM or SIGINT.
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
		log.Error("stopped with an error", zap.Error(err))
		return err
	}
	log.Info("stopped cleanly")
	return nil
}
