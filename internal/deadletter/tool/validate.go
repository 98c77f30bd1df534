package tool

import (
	"strconv"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/inbound"
	"github.com/cimstream/cimstream/internal/outbound"
	"github.com/cimstream/cimstream/internal/route"
	"github.com/cimstream/cimstream/internal/session"
	"github.com/cimstream/cimstream/pkg/cim"
)

// Validator re-validates dead letters with the pipelines' own checks and the configuration's limits
// and routes: a record replayed to the outbound input (topics.ccmOutbound) is checked as the outbound
// pipeline would check it, including that a route matches (a no_route dead letter stays invalid until
// a route or channel is configured); one replayed to the repartition topic, a connector topic or
// anything else as the inbound pipeline would, unless the dead letter says it came from the outbound
// pipeline and the target is its source. A webhook egress dead letter replayed to its connector topic is
// checked as an outbound message without routing.
func Validator(cfg config.Config) func(l Letter, target string) cim.Violations {
	router := route.New(cfg.Outbound.Routes, cfg.ChannelMap())
	limits := cim.Limits{MaxBytes: cfg.Inbound.MaxMessageBytes, MaxIDBytes: cfg.Inbound.MaxIDBytes}
	return func(l Letter, target string) cim.Violations {
		// A webhook egress dead letter goes back to its connector topic: it is checked as an outbound
		// message, with no route to match (the route was taken before it reached that topic).
		if l.Pipeline == "egress" && target == l.SourceTopic {
			_, vs := cim.DecodeAndValidate(l.Record.Value, limits, cim.Outbound)
			return vs
		}
		outbound := target == cfg.Topics.CCMOutbound || (l.Pipeline == "outbound" && target == l.SourceTopic && target != cfg.Topics.Repartition)
		if !outbound {
			return inbound.CheckLimits(l.Record.Value, limits)
		}
		return checkOutbound(router, l.Record.Value, limits)
	}
}

func checkOutbound(router *route.Router, value []byte, limits cim.Limits) cim.Violations {
	v := outbound.DecideLimits(router, value, limits)
	if len(v.Violations) > 0 {
		return v.Violations
	}
	if len(v.Route.Destinations) == 0 {
		return cim.Violations{{Path: "header.channelData.serviceIdentifier", Code: outbound.CodeNoRoute,
			Message: "no route matches and no channel is configured for " + strconv.Quote(v.Message.ServiceIdentifier())}}
	}
	return nil
}

// Partitioner is Replay.Partition for cfg: a record replayed to the inbound repartition topic is
// partitioned by its customer, as the pipeline partitions that topic with the fast path on, so it meets
// its customer's session table (by its session key with the fast path off).
func Partitioner(cfg config.Config) func(target string, key []byte) []byte {
	return func(target string, key []byte) []byte {
		if !cfg.Inbound.FastPath || target != cfg.Topics.Repartition {
			return nil
		}
		if customer, ok := session.Customer(string(key)); ok {
			return []byte(customer)
		}
		return nil
	}
}

// Own is Replay.Own for cfg: the repartition topic is the only topic a dead letter comes from that
// cimstream alone writes (the sessions stage's input).
func Own(cfg config.Config) func(topic string) bool {
	return func(topic string) bool { return topic == cfg.Topics.Repartition }
}
