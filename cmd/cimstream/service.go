package main

import (
	"errors"

	"github.com/cimstream/cimstream/internal/inbound"
	"github.com/cimstream/cimstream/internal/metrics"
	"github.com/cimstream/cimstream/internal/outbound"
	"github.com/cimstream/cimstream/internal/stream"
	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/service"
)

// addPipelines attaches the pipelines the configuration enables.
func addPipelines(svc *service.Service, cfg config.Config, log *zap.Logger) error {
	if cfg.Inbound.Enabled {
		ready := svc.Readiness()
		ready.Set(inbound.ReadyIngest, errors.New("not started"))
		ready.Set(inbound.ReadySessions, errors.New("not started"))
		m := svc.Metrics()
		p, err := inbound.NewPipeline(cfg, svc.Kafka(), log, inbound.Observers{
			Records: loggedDeadLetters{m, log}, Sessions: m, Runner: m, Restored: m.Restored, Ready: ready.Set,
		})
		if err != nil {
			return err
		}
		svc.Add(p)
	}
	if cfg.Outbound.Enabled {
		svc.Readiness().Set(outbound.ReadyCondition, errors.New("not started"))
		m := svc.Metrics()
		svc.Add(outbound.NewPipeline(cfg, svc.Kafka(), log, outbound.Observers{Notifications: loggedDeadLetters{m, log}, Runner: m, Ready: svc.Readiness().Set}))
	}
	return nil
}

// logStartup writes one line with the version and the effective configuration, secrets masked.
func logStartup(log *zap.Logger, cfg config.Config) {
	// Through YAML so the line uses the documented key names and readable durations.
	var effective map[string]any
	if text, err := cfg.YAML(); err == nil {
		_ = yaml.Unmarshal(text, &effective)
	}
	log.Info("cimstream starting", zap.String("version", service.Version), zap.Any("config", effective))
}

func errField(err error) zap.Field { return zap.Error(err) }

// loggedDeadLetters counts dead letters and logs each with where it came from and why; never its content.
// The logger samples, so a flood of bad input stays a trickle in the log.
type loggedDeadLetters struct {
	*metrics.Metrics
	log *zap.Logger
}

func (l loggedDeadLetters) DeadLettered(pipeline string, rec stream.Record, codes []string) {
	l.Metrics.DeadLettered(pipeline, rec, codes)
	l.log.Warn("dead-lettered", zap.String("pipeline", pipeline), zap.String("topic", rec.Topic),
		zap.Int("partition", rec.Partition), zap.Int64("offset", rec.Offset), zap.Strings("codes", codes))
}
