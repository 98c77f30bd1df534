// Package metrics defines every Prometheus metric cimstream exports, on a registry the service owns.
// The pipelines report through the small observer interfaces they declare; Metrics implements them all.
// Label values are bounded: stage names, configured topics, codes, statuses, reasons,
// partitions. Never ids or customer data.
package metrics

import (
	"maps"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cimstream/cimstream/internal/session"
	"github.com/cimstream/cimstream/internal/stream"
)

// LatencyBuckets suit chat traffic: 1 ms to 10 s.
var LatencyBuckets = []float64{.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10}

// StepBuckets are finer below a millisecond: most steps of a batch take microseconds.
var StepBuckets = []float64{.0001, .0002, .0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10}

// Metrics holds the collectors.
type Metrics struct {
	consumed       *prometheus.CounterVec
	produced       *prometheus.CounterVec
	deadLetters    *prometheus.CounterVec
	validation     *prometheus.CounterVec
	notifications  *prometheus.CounterVec
	unknownIntents *prometheus.CounterVec
	inboundPaths   *prometheus.CounterVec
	batchDuration  *prometheus.HistogramVec
	latency        *prometheus.HistogramVec
	steps          *prometheus.HistogramVec
	lag            *prometheus.GaugeVec
	partitions     *prometheus.GaugeVec
	rebalances     *prometheus.CounterVec
	restoreSeconds *prometheus.HistogramVec
	restoreRecords *prometheus.CounterVec
	restores       *prometheus.CounterVec
	sessionsActive prometheus.Gauge
	watermarkAge   *prometheus.GaugeVec
	sessionsOpened prometheus.Counter
	sessionsClosed *prometheus.CounterVec
	sessionEvents  *prometheus.CounterVec
	untrustedTimes *prometheus.CounterVec
	corruptStates  prometheus.Counter
	replays        *prometheus.CounterVec
	evictions      prometheus.Counter
	trimmed        *prometheus.CounterVec
	writeRetries   *prometheus.CounterVec
	writeFailures  *prometheus.CounterVec
	fetchFailures  *prometheus.CounterVec
	renamed        *prometheus.CounterVec
	// The HTTP ingress's: requests by route and status code, latency, requests in flight.
	ingressRequests *prometheus.CounterVec
	ingressDuration *prometheus.HistogramVec
	ingressInFlight prometheus.Gauge
}

// New registers every metric on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cimstream_records_consumed_total",
			Help: "Records read from Kafka, by pipeline stage and topic."}, []string{"stage", "topic"}),
		produced: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cimstream_records_produced_total",
			Help: "Records written and acknowledged (acks=all), by pipeline stage and destination topic."}, []string{"stage", "topic"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cimstream_dead_letters_total",
			Help: "Records sent to the dead-letter topic, by the stage that refused them and their first error code."}, []string{"stage", "code"}),
		validation: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cimstream_validation_failures_total",
			Help: "Violations found in records, by stage and code (a record may count under several codes)."}, []string{"stage", "code"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cimstream_notifications_total",
			Help: "Delivery notifications emitted for outbound messages, by status and reason code."}, []string{"status", "reason_code"}),
		unknownIntents: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cimstream_unknown_intents_total",
			Help: "Messages accepted with a header.intent outside the documented values, by stage."}, []string{"stage"}),
		inboundPaths: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cimstream_inbound_path_records_total",
			Help: "Valid channel records by the way they reached the sessions stage: taken where they are (home) or through the repartition topic (repartition)."}, []string{"path"}),
		batchDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cimstream_batch_duration_seconds",
			Help: "Time to process a batch and have its outputs acknowledged.", Buckets: LatencyBuckets}, []string{"stage"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cimstream_end_to_end_latency_seconds",
			Help: "From an input record's timestamp to its outputs being acknowledged.", Buckets: LatencyBuckets}, []string{"stage"}),
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cimstream_stage_step_seconds",
			Help:    "Trace of a batch by step (one observation per batch and step): fetch (first record's timestamp to the batch in hand), lock (wait for a handler sharing state), decide (the handler), produce (handler done to write sent), ack (one write, sent to acknowledged).",
			Buckets: StepBuckets}, []string{"stage", "step"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cimstream_consumer_lag_records",
			Help: "Log-end offset minus committed offset, per consumer group, topic and partition."}, []string{"group", "topic", "partition"}),
		partitions: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cimstream_partitions_owned",
			Help: "Partitions this instance owns, by stage."}, []string{"stage"}),
		rebalances: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cimstream_rebalances_total",
			Help: "Consumer-group generations joined, by stage."}, []string{"stage"}),
		restoreSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cimstream_state_restore_seconds",
			Help: "Time to restore one partition's state from its changelog.", Buckets: []float64{.01, .05, .1, .5, 1, 5, 10, 30, 60, 120}}, []string{"stage"}),
		restores: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cimstream_state_restores_total",
			Help: "Partition states taken up, by where from: beginning (the changelog replayed from its start) or kept (the table this instance held, caught up from the changelog offset it stopped at)."}, []string{"stage", "from"}),
		restoreRecords: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cimstream_state_restore_records_total",
			Help: "Changelog records replayed while restoring state."}, []string{"stage"}),
		watermarkAge: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cimstream_session_watermark_age_seconds",
			Help: "How far the upstream watermark of a sessions partition trails the processing clock: no session there expires proactively before its timeout plus this."}, []string{"partition"}),
		sessionsActive: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cimstream_sessions_active",
			Help: "Open sessions within their idle timeout, in the partitions this instance owns."}),
		sessionsOpened: prometheus.NewCounter(prometheus.CounterOpts{Name: "cimstream_sessions_opened_total",
			Help: "Channel sessions opened."}),
		sessionsClosed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cimstream_sessions_closed_total",
			Help: "Channel sessions closed, by reason: idle, end_chat, start_chat, adopted."}, []string{"reason"}),
		sessionEvents: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cimstream_session_events_total",
			Help: "Session lifecycle events written for the first time (replays repeat them uncounted), by event (CHANNEL_SESSION_STARTED, _ENDED, _EXPIRED) and reasonCode (\"\" for STARTED)."}, []string{"event", "reason"}),
		untrustedTimes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cimstream_session_time_untrusted_total",
			Help: "Inbound records whose record time was not used as session time, by reason: not_positive, future."}, []string{"reason"}),
		corruptStates: prometheus.NewCounter(prometheus.CounterOpts{Name: "cimstream_session_state_corrupt_total",
			Help: "Changelog records that could not be read on restore (the key started fresh)."}),
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cimstream_session_replays_total",
			Help: "Records recognised as applied before (duplicates after a crash or rebalance), by whether their first decision was still remembered."}, []string{"remembered"}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{Name: "cimstream_session_decisions_evicted_total",
			Help: "Session decisions dropped inside the replay window because a key made more than the remembered maximum (a replay of what they governed gets later ids)."}),
		trimmed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cimstream_session_state_trimmed_total",
			Help: "What the session state cap dropped beyond decisions: source partitions still needed (sources; a replay of their records is applied again) and states reset because even their newest decisions did not fit (reset)."}, []string{"what"}),
		writeRetries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cimstream_write_retries_total",
			Help: "Records written again after the broker refused them."}, []string{"stage"}),
		writeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cimstream_write_failures_total",
			Help: "Records given up on after the delivery timeout (outbound FAILED/500)."}, []string{"stage"}),
		fetchFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cimstream_fetch_failures_total",
			Help: "Fetches that failed with an error other than waiting for records (the reader retries them)."}, []string{"stage"}),
		renamed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cimstream_reserved_headers_renamed_total",
			Help: "Headers in cimstream's namespace (cimstream.*) that records from outside carried, renamed x-original-cimstream.* at the entry."}, []string{"stage", "topic"}),
		ingressRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cimstream_ingress_requests_total",
			Help: "HTTP ingress requests answered, by route and status code."}, []string{"route", "code"}),
		ingressDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cimstream_ingress_request_duration_seconds",
			Help: "From an ingress request's arrival to its answer (a 202 includes the acks=all write).", Buckets: LatencyBuckets}, []string{"route"}),
		ingressInFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cimstream_ingress_requests_in_flight",
			Help: "Ingress requests being handled now (ingress.maxConcurrent bounds those admitted)."}),
	}
	reg.MustRegister(m.Collectors()...)
	m.initSeries()
	return m
}

// Stages are the pipeline stages, the values of every stage label.
var Stages = []string{"inbound-ingest", "inbound-sessions", "outbound", "egress"}

// initSeries creates at zero the series that alert rules compare over time. A labelled series otherwise
// appears only with its first value, and rate() or increase() cannot see that first value as an increase:
// the first write failure or the restores at start-up would never alert.
func (m *Metrics) initSeries() {
	for _, st := range Stages {
		m.writeRetries.WithLabelValues(st)
		m.writeFailures.WithLabelValues(st)
		m.fetchFailures.WithLabelValues(st)
	}
	m.restoreSeconds.WithLabelValues("inbound-sessions")
	m.trimmed.WithLabelValues("sources") // inbound.TrimmedSources, TrimmedReset
	m.trimmed.WithLabelValues("reset")
	m.notifications.WithLabelValues("FAILED", "500")
	for _, r := range IngressRoutes[:2] { // the series the ingress 5xx alert divides
		m.ingressRequests.WithLabelValues(r, "202")
		m.ingressRequests.WithLabelValues(r, "503")
		m.ingressDuration.WithLabelValues(r)
	}
}

// Collectors lists every collector, for registration and for listing metric names.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.consumed, m.produced, m.deadLetters, m.validation, m.notifications, m.unknownIntents, m.inboundPaths,
		m.batchDuration, m.latency, m.steps, m.lag, m.partitions, m.rebalances, m.restoreSeconds, m.restoreRecords, m.restores,
		m.sessionsActive, m.watermarkAge, m.sessionsOpened, m.sessionsClosed, m.sessionEvents, m.untrustedTimes, m.corruptStates, m.replays, m.evictions, m.trimmed, m.writeRetries, m.writeFailures, m.fetchFailures, m.renamed,
		m.ingressRequests, m.ingressDuration, m.ingressInFlight}
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// Names returns the metric names the collectors describe, sorted.
func Names(collectors ...prometheus.Collector) []string {
	seen := map[string]bool{}
	for _, c := range collectors {
		ch := make(chan *prometheus.Desc, 256)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			if m := fqName.FindStringSubmatch(d.String()); m != nil {
				seen[m[1]] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// DeadLettered implements the pipelines' observers.
func (m *Metrics) DeadLettered(stage string, _ stream.Record, codes []string) {
	first := "unknown"
	if len(codes) > 0 {
		first = codes[0]
	}
	m.deadLetters.WithLabelValues(stage, first).Inc()
	for _, c := range codes {
		m.validation.WithLabelValues(stage, c).Inc()
	}
}

// UnknownIntent implements inbound.Observer.
func (m *Metrics) UnknownIntent(stage string) { m.unknownIntents.WithLabelValues(stage).Inc() }

// Routed implements inbound.Observer.
func (m *Metrics) Routed(home, repartitioned int) {
	if home > 0 {
		m.inboundPaths.WithLabelValues("home").Add(float64(home))
	}
	if repartitioned > 0 {
		m.inboundPaths.WithLabelValues("repartition").Add(float64(repartitioned))
	}
}

// Notified implements outbound.Observer.
func (m *Metrics) Notified(status string, reasonCode int) {
	m.notifications.WithLabelValues(status, strconv.Itoa(reasonCode)).Inc()
}

// SessionOpened implements inbound.SessionObserver.
func (m *Metrics) SessionOpened() { m.sessionsOpened.Inc() }

// SessionClosed implements inbound.SessionObserver.
func (m *Metrics) SessionClosed(reason session.Reason) {
	m.sessionsClosed.WithLabelValues(string(reason)).Inc()
}

// SessionEvent implements inbound.SessionObserver.
func (m *Metrics) SessionEvent(event, reason string) {
	m.sessionEvents.WithLabelValues(event, reason).Inc()
}

// UntrustedTime implements inbound.SessionObserver.
func (m *Metrics) UntrustedTime(reason string) { m.untrustedTimes.WithLabelValues(reason).Inc() }

// StateCorrupt implements inbound.SessionObserver.
func (m *Metrics) StateCorrupt() { m.corruptStates.Inc() }

// Replayed implements inbound.SessionObserver.
func (m *Metrics) Replayed(remembered bool) {
	m.replays.WithLabelValues(strconv.FormatBool(remembered)).Inc()
}

// DecisionsEvicted implements inbound.SessionObserver.
func (m *Metrics) DecisionsEvicted(n int) { m.evictions.Add(float64(n)) }

// StateTrimmed implements inbound.SessionObserver.
func (m *Metrics) StateTrimmed(what string, n int) { m.trimmed.WithLabelValues(what).Add(float64(n)) }

// SessionsActive implements inbound.SessionObserver: delta is added to the gauge.
func (m *Metrics) SessionsActive(delta int) { m.sessionsActive.Add(float64(delta)) }

// WatermarkAge implements inbound.SessionObserver; a negative age removes the partition's series (the
// partition moved).
func (m *Metrics) WatermarkAge(partition int, age time.Duration) {
	label := strconv.Itoa(partition)
	if age < 0 {
		m.watermarkAge.DeleteLabelValues(label)
		return
	}
	m.watermarkAge.WithLabelValues(label).Set(age.Seconds())
}

// Consumed implements stage.Observer.
func (m *Metrics) Consumed(stage, topic string, n int) {
	m.consumed.WithLabelValues(stage, topic).Add(float64(n))
}

// Produced implements stage.Observer.
func (m *Metrics) Produced(stage, topic string, n int) {
	m.produced.WithLabelValues(stage, topic).Add(float64(n))
}

// Batch implements stage.Observer: one batch done, with the record timestamps of its inputs.
func (m *Metrics) Batch(stage string, took time.Duration, recordTimes []time.Time) {
	m.batchDuration.WithLabelValues(stage).Observe(took.Seconds())
	now := time.Now()
	h := m.latency.WithLabelValues(stage)
	for _, t := range recordTimes {
		if d := now.Sub(t); d >= 0 {
			h.Observe(d.Seconds())
		}
	}
}

// Step implements stage.StepObserver: the trace of one batch's step.
func (m *Metrics) Step(stage, step string, took time.Duration) {
	if took >= 0 {
		m.steps.WithLabelValues(stage, step).Observe(took.Seconds())
	}
}

// Retried implements stage.Observer.
func (m *Metrics) Retried(stage string, n int) { m.writeRetries.WithLabelValues(stage).Add(float64(n)) }

// GaveUp implements stage.Observer.
func (m *Metrics) GaveUp(stage string, n int) { m.writeFailures.WithLabelValues(stage).Add(float64(n)) }

// Generation implements stage.Observer.
func (m *Metrics) Generation(stage string, partitions int) {
	m.rebalances.WithLabelValues(stage).Inc()
	m.partitions.WithLabelValues(stage).Set(float64(partitions))
}

// Restored counts a partition state taken up: replayed from the changelog's beginning, or kept and
// caught up (records read, time taken).
func (m *Metrics) Restored(stage string, records int, took time.Duration, kept bool) {
	from := "beginning"
	if kept {
		from = "kept"
	}
	m.restores.WithLabelValues(stage, from).Inc()
	m.restoreSeconds.WithLabelValues(stage).Observe(took.Seconds())
	m.restoreRecords.WithLabelValues(stage).Add(float64(records))
}

// Lag sets the lag of one partition.
func (m *Metrics) Lag(group, topic string, partition int, lag int64) {
	m.lag.WithLabelValues(group, topic, strconv.Itoa(partition)).Set(float64(lag))
}

// ForgetLag removes the lag series of a group, before it is set anew.
func (m *Metrics) ForgetLag(group string) {
	m.lag.DeletePartialMatch(prometheus.Labels{"group": group})
}

// FetchFailed implements stage.Observer.
func (m *Metrics) FetchFailed(stage string) { m.fetchFailures.WithLabelValues(stage).Inc() }

// RenamedHeaders implements stage.Observer.
func (m *Metrics) RenamedHeaders(stage, topic string, n int) {
	m.renamed.WithLabelValues(stage, topic).Add(float64(n))
}
