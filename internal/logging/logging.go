// Package logging builds cimstream's zap logger: JSON for machines by default, console for people.
package logging

import (
	"fmt"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// New returns a logger at level ("debug", "info", "warn", "error") in format ("json" or "console").
// Repeated messages are sampled (the first 10 per second, then every 100th) so that a flood of bad
// records cannot flood the log.
func New(level, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	var cfg zap.Config
	switch format {
	case "json":
		cfg = zap.NewProductionConfig()
		cfg.EncoderConfig.TimeKey = "ts"
		cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	case "console":
		cfg = zap.NewDevelopmentConfig()
		cfg.EncoderConfig.EncodeLevel = zapcore.CapitalColorLevelEncoder
	default:
		return nil, fmt.Errorf("log format %q: want json or console", format)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Sampling = &zap.SamplingConfig{Initial: 10, Thereafter: 100}
	cfg.DisableStacktrace = lvl > zapcore.DebugLevel
	logger, err := cfg.Build(zap.WithClock(zapcore.DefaultClock))
	if err != nil {
		return nil, err
	}
	return logger, nil
}
