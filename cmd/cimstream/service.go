package main

import (
	"errors"

	"github.com/cimstream/cimstream/internal/egress"
	"github.com/cimstream/cimstream/internal/inbound"
	"github.com/cimstream/cimstream/internal/ingress"
	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/outbound"
	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/service"
)

// addPipelines attaches the pipelines the configuration enables.
func addPipelines(svc *service.Service, cfg config.Config, log *zap.Logger) error {
	m, ready := svc.Metrics(), svc.Readiness()
	if cfg.Inbound.Enabled {
		ready.Set(inbound.ReadyIngest, errors.New("not started"))
		ready.Set(inbound.ReadySessions, errors.New("not started"))
		p, err := inbound.NewPipeline(cfg, svc.Kafka(), log, inbound.Observers{
			Records: m, Sessions: m, Runner: m, Stats: svc.Stats(), Budget: svc.Budget(), Restored: m.Restored, Ready: ready.Set,
		})
		if err != nil {
			return err
		}
		svc.Add(p)
	}
	if cfg.Outbound.Enabled {
		ready.Set(outbound.ReadyCondition, errors.New("not started"))
		svc.Add(outbound.NewPipeline(cfg, svc.Kafka(), log, outbound.Observers{Notifications: m, Runner: m,
			Stats: svc.Stats(), Budget: svc.Budget(), Ready: ready.Set}))
	}
	if cfg.Ingress.Address != "" {
		srv, err := ingress.NewServer(cfg, kafkaedge.NewSink(svc.Kafka(), "ingress", svc.Stats()), m, log, svc.Budget())
		if err != nil {
			return err
		}
		svc.AddFront(srv)
	}
	if len(cfg.Egress.Webhooks) > 0 {
		for _, w := range cfg.Egress.Webhooks {
			ready.Set(egress.ReadyCondition+w.Channel, errors.New("not started"))
		}
		svc.Add(egress.NewPipeline(cfg, svc.Kafka(), log, egress.Observers{Egress: svc.EgressMetrics(), Runner: m,
			Stats: svc.Stats(), Budget: svc.Budget(), Ready: ready.Set}))
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
	for _, d := range cfg.Deprecations() {
		log.Warn("deprecated configuration key", zap.String("problem", d))
	}
}
