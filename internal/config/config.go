// Package config holds cimstream's configuration: one struct with defaults, loaded from a YAML file,
// overridden by CIMSTREAM_* environment variables and command-line settings, then validated.
//
// Every key has a dotted name (kafka.brokers, inbound.sessionIdleTimeout) used in the YAML file, in the
// environment (CIMSTREAM_KAFKA_BROKERS) and in errors, so a message always names the key to fix.
package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/cimstream/cimstream/internal/session"
)

// Config is the whole configuration of a cimstream process.
type Config struct {
	Kafka    Kafka    `yaml:"kafka"`
	Topics   Topics   `yaml:"topics"`
	Inbound  Inbound  `yaml:"inbound"`
	Outbound Outbound `yaml:"outbound"`
	// Channels maps a serviceIdentifier to its channel name, for both directions: the ingress writes to
	// cim.inbound.<channel>, the default outbound route to cim.outbound.<channel>.
	Channels map[string]string `yaml:"channels"`
	Ingress  Ingress           `yaml:"ingress"`
	Admin    Admin             `yaml:"admin"`
	Log      Log               `yaml:"log"`
	Startup  Startup           `yaml:"startup"`
	Shutdown Shutdown          `yaml:"shutdown"`
	// DeadLetters shapes the records written to topics.deadLetter.
	DeadLetters DeadLetters `yaml:"deadLetters"`
	Memory      Memory      `yaml:"memory"`
	// Egress configures the webhook channels (docs/http-egress.md).
	Egress Egress `yaml:"egress"`
}

// Egress configures the webhook channels: each consumes its connector topic cim.outbound.<channel> and
// POSTs every message to the connector's URL, signed.
type Egress struct {
	Webhooks []Webhook `yaml:"webhooks"`
	// RequestTimeout bounds one POST (connect, send, and read the answer).
	RequestTimeout time.Duration `yaml:"requestTimeout"`
	// Concurrency is how many POSTs one channel has in flight at most (different customers).
	Concurrency int `yaml:"concurrency"`
	// MaxInFlight bounds the records a channel holds (fetched, not yet settled) per partition.
	MaxInFlight int         `yaml:"maxInFlight"`
	Retry       EgressRetry `yaml:"retry"`
	// SignatureV1 keeps the v1 signature (timestamp and body only) beside v2 while connectors still
	// verify v1; turned off once every connector verifies v2 (docs/http-egress.md).
	SignatureV1 bool `yaml:"signatureV1"`
}

// EgressRetry is the retry policy of 5xx answers, timeouts and connection errors.
type EgressRetry struct {
	MinBackoff time.Duration `yaml:"minBackoff"`
	MaxBackoff time.Duration `yaml:"maxBackoff"`
	// Deadline is how long after its first attempt a message is still tried; then it is FAILED/500.
	Deadline time.Duration `yaml:"deadline"`
}

// Webhook is one channel delivered over HTTP.
type Webhook struct {
	Channel    string `yaml:"channel"`
	URL        string `yaml:"url"`
	SecretFile string `yaml:"secretFile"`
	// Secret is read from SecretFile at load; never printed.
	Secret []byte `yaml:"-"`
}

// DeadLetters shapes dead-letter records.
type DeadLetters struct {
	// MaxValueBytes caps the original value a dead letter keeps; a longer one is cut (headers say the
	// original size), so a record too large for its own topic still fits the dead-letter topic.
	MaxValueBytes int `yaml:"maxValueBytes"`
}

// Memory bounds what an instance holds.
type Memory struct {
	// BudgetBytes bounds the bytes of fetched and in-flight records across all stages and partitions;
	// fetching pauses while it is spent. 0 disables the bound.
	BudgetBytes int64 `yaml:"budgetBytes"`
}

// EnrichmentHeadroom is what an inbound message may grow by on its way through cimstream (id,
// customer, session ids, source headers): kafka.producer.batchBytes must exceed
// inbound.maxMessageBytes by at least this much, or valid messages could never be written.
const EnrichmentHeadroom = 64 << 10

// The range of inbound.maxIdBytes: below MinIDBytes real ids (UUIDs, phone numbers, URLs) would be
// refused; above MaxIDBytes the session state's byte cap could no longer hold the current session and
// the one before it (internal/session tests this at the ceiling).
const (
	MinIDBytes = 64
	MaxIDBytes = 2 << 10
)

// Kafka holds the connection and client settings shared by every producer and consumer.
type Kafka struct {
	Brokers  []string `yaml:"brokers"`
	ClientID string   `yaml:"clientId"`
	// DialTimeout bounds connecting to a broker; RequestTimeout bounds one admin or metadata request.
	DialTimeout    time.Duration `yaml:"dialTimeout"`
	RequestTimeout time.Duration `yaml:"requestTimeout"`
	// MetadataTTL is how long topic metadata is cached; kept short so new topics are seen quickly.
	MetadataTTL time.Duration `yaml:"metadataTTL"`
	TLS         TLS           `yaml:"tls"`
	SASL        SASL          `yaml:"sasl"`
	Producer    Producer      `yaml:"producer"`
	Consumer    Consumer      `yaml:"consumer"`
}

// TLS configures encryption to the brokers.
type TLS struct {
	Enabled            bool   `yaml:"enabled"`
	CAFile             string `yaml:"caFile"`
	CertFile           string `yaml:"certFile"`
	KeyFile            string `yaml:"keyFile"`
	ServerName         string `yaml:"serverName"`
	InsecureSkipVerify bool   `yaml:"insecureSkipVerify"`
}

// SASL configures authentication to the brokers.
type SASL struct {
	// Mechanism is none, plain, scram-sha-256 or scram-sha-512, in any case (SCRAM-SHA-512 as Kafka writes it).
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	Password  string `yaml:"password" secret:"true"`
	// PasswordFile, when set, is read at start-up and wins over Password (for mounted secrets).
	PasswordFile string `yaml:"passwordFile"`
}

// Producer holds the write settings; see docs/configuration.md for why each default was chosen.
type Producer struct {
	BatchTimeout time.Duration `yaml:"batchTimeout"`
	BatchSize    int           `yaml:"batchSize"`
	BatchBytes   int64         `yaml:"batchBytes"`
	// Compression is none, gzip, snappy, lz4 or zstd.
	Compression  string        `yaml:"compression"`
	MaxAttempts  int           `yaml:"maxAttempts"`
	WriteTimeout time.Duration `yaml:"writeTimeout"`
}

// Consumer holds the read and consumer-group settings.
type Consumer struct {
	GroupID           string        `yaml:"groupId"`
	MinBytes          int           `yaml:"minBytes"`
	MaxBytes          int           `yaml:"maxBytes"`
	MaxWait           time.Duration `yaml:"maxWait"`
	SessionTimeout    time.Duration `yaml:"sessionTimeout"`
	RebalanceTimeout  time.Duration `yaml:"rebalanceTimeout"`
	HeartbeatInterval time.Duration `yaml:"heartbeatInterval"`
	// RevokeWait is how long a partition that was revoked waits for its writes in flight before the
	// rebalance goes on, so no write of the old owner lands after the new owner started.
	RevokeWait time.Duration `yaml:"revokeWait"`
	// CommitInterval is how often processed offsets are committed (batched, never per message).
	CommitInterval time.Duration `yaml:"commitInterval"`
	// BatchSize bounds the records a partition worker holds at once (backpressure); Linger is how long
	// a batch waits to fill after its first record.
	BatchSize int           `yaml:"batchSize"`
	Linger    time.Duration `yaml:"linger"`
}

// Topics names every topic cimstream reads or writes, and how `cimstream topics create` makes them.
type Topics struct {
	// Inbound lists connector topics to consume; InboundPattern adds every topic matching it.
	Inbound        []string `yaml:"inbound"`
	InboundPattern string   `yaml:"inboundPattern"`
	// InboundChannels are the connector topics `topics create` makes (the pattern cannot create topics).
	InboundChannels []string `yaml:"inboundChannels"`
	CCMInbound      string   `yaml:"ccmInbound"`
	CCMOutbound     string   `yaml:"ccmOutbound"`
	Notifications   string   `yaml:"notifications"`
	DeadLetter      string   `yaml:"deadLetter"`
	// Sessions is the compacted changelog of the inbound session state.
	Sessions string `yaml:"sessions"`
	// Repartition is the internal topic that re-keys inbound messages by customer; it must have as many
	// partitions as Sessions.
	Repartition string `yaml:"repartition"`
	// SessionEvents receives the session lifecycle events; empty: CCMInbound, so the CCM sees them in
	// order with the messages of each conversation.
	SessionEvents string `yaml:"sessionEvents"`
	// Partitions and ReplicationFactor apply to topics created by `cimstream topics create`.
	Partitions        int `yaml:"partitions"`
	ReplicationFactor int `yaml:"replicationFactor"`
}

// Inbound configures the connector → CCM pipeline.
type Inbound struct {
	Enabled            bool          `yaml:"enabled"`
	SessionIdleTimeout time.Duration `yaml:"sessionIdleTimeout"`
	// SessionIdleTimeouts override SessionIdleTimeout per channel: the first entry whose
	// serviceIdentifier equals the message's, else the first whose glob matches it.
	SessionIdleTimeouts []IdleTimeout `yaml:"sessionIdleTimeouts"`
	MaxMessageBytes     int           `yaml:"maxMessageBytes"`
	// MaxIDBytes bounds each identifying string of a message (id, conversationId, channelSessionId,
	// serviceIdentifier, channelCustomerIdentifier, ...), in both directions: the session state keeps
	// them. Over it a message is too_long.
	MaxIDBytes int `yaml:"maxIdBytes"`
	// TopicRefreshInterval is how often topics matching the pattern are listed again.
	TopicRefreshInterval time.Duration `yaml:"topicRefreshInterval"`
	// ReplayWindow is how long (time the sessions stage ran) a duplicate still gets its first copy's
	// ids: it must outlast moving a crashed member's partitions.
	ReplayWindow time.Duration `yaml:"replayWindow"`
	// SessionEvents switches the CHANNEL_SESSION_STARTED / ENDED / EXPIRED events (to
	// topics.sessionEvents).
	SessionEvents bool `yaml:"sessionEvents"`
	// FastPath lets the sessions stage take a record where it is when it already sits on its customer's
	// home partition of a channel topic with the repartition topic's partition count, instead of
	// sending it through the repartition topic (docs/design.md, "The single-stage fast path").
	FastPath bool `yaml:"fastPath"`
}

// SessionEventsTopic is where session lifecycle events go ("" when they are off).
func (c Config) SessionEventsTopic() string {
	switch {
	case !c.Inbound.SessionEvents:
		return ""
	case c.Topics.SessionEvents != "":
		return c.Topics.SessionEvents
	}
	return c.Topics.CCMInbound
}

// IdleTimeout is the session idle timeout of the channels whose serviceIdentifier matches (exact, or a
// glob in path.Match syntax).
type IdleTimeout struct {
	ServiceIdentifier string        `yaml:"serviceIdentifier"`
	Timeout           time.Duration `yaml:"timeout"`
}

// IdleTimeoutFor returns the idle timeout of serviceIdentifier: an exact entry, else the first
// matching glob, else the default.
func (in Inbound) IdleTimeoutFor(serviceIdentifier string) time.Duration {
	for _, e := range in.SessionIdleTimeouts {
		if e.ServiceIdentifier == serviceIdentifier {
			return e.Timeout
		}
	}
	for _, e := range in.SessionIdleTimeouts {
		if ok, _ := path.Match(e.ServiceIdentifier, serviceIdentifier); ok {
			return e.Timeout
		}
	}
	return in.SessionIdleTimeout
}

// Outbound configures the CCM → connector pipeline.
type Outbound struct {
	Enabled bool `yaml:"enabled"`
	// Channels is the deprecated spelling of the top-level channels table (read when that one is empty,
	// with a warning at start-up; setting both is an error).
	Channels map[string]string `yaml:"channels"`
	// AcceptedNotifications switches the ACCEPTED/202 notification (an extension of the documented statuses).
	AcceptedNotifications bool `yaml:"acceptedNotifications"`
	// DeliveryTimeout is how long writes to a destination are retried before the message is reported
	// FAILED/500 and dead-lettered.
	DeliveryTimeout time.Duration `yaml:"deliveryTimeout"`
	// Routes are evaluated in order; a matching route is final unless it says continue, and when no final
	// route matched the default route (cim.outbound.<channel> from Channels) is reached too.
	Routes []Route `yaml:"routes"`
}

// Route maps outbound messages to destination topics. Empty match fields match anything.
type Route struct {
	Name string `yaml:"name"`
	// ServiceIdentifier is an exact value or a glob (path.Match syntax: *, ?, [a-z]).
	ServiceIdentifier string   `yaml:"serviceIdentifier"`
	SenderType        string   `yaml:"senderType"` // compared case-insensitively
	BodyType          string   `yaml:"bodyType"`
	Destinations      []string `yaml:"destinations"`
	// Continue lets later routes, and the default route, add destinations too.
	Continue bool `yaml:"continue"`
}

// Ingress configures the HTTP edge for connectors that speak REST (POST /cim-messages). It is off while
// Address is empty.
type Ingress struct {
	Address string `yaml:"address"`
	// DefaultChannel takes serviceIdentifiers the channels table does not name; empty answers them 404.
	DefaultChannel string `yaml:"defaultChannel"`
	// TokensFile holds the accepted bearer tokens, one a line, re-read when it changes. Empty: no auth.
	TokensFile string     `yaml:"tokensFile"`
	TLS        IngressTLS `yaml:"tls"`
	// MaxBodyBytes is the largest request body; it must leave inbound.maxMessageBytes room for an id.
	MaxBodyBytes      int           `yaml:"maxBodyBytes"`
	ReadHeaderTimeout time.Duration `yaml:"readHeaderTimeout"`
	// ReadTimeout bounds reading a whole request, body included (slow senders).
	ReadTimeout time.Duration `yaml:"readTimeout"`
	IdleTimeout time.Duration `yaml:"idleTimeout"`
	// MaxConcurrent bounds the requests handled at once; more are answered 429.
	MaxConcurrent int `yaml:"maxConcurrent"`
	// ProduceTimeout is how long a request waits for the broker's acknowledgement before it is answered 503.
	ProduceTimeout time.Duration `yaml:"produceTimeout"`
	// RetryAfter is the Retry-After given with 503 and 429.
	RetryAfter time.Duration `yaml:"retryAfter"`
	// IdempotencyWindow is how long an accepted id is remembered: a retry within it gets the same answer
	// and writes nothing. IdempotencyMaxEntries and IdempotencyMaxBytes bound the ids remembered (the
	// oldest go first); the bytes are charged to memory.budgetBytes.
	IdempotencyWindow     time.Duration `yaml:"idempotencyWindow"`
	IdempotencyMaxEntries int           `yaml:"idempotencyMaxEntries"`
	IdempotencyMaxBytes   int64         `yaml:"idempotencyMaxBytes"`
	// MaxInFlightBytes bounds the request bodies held at once, charged to memory.budgetBytes; 0 is a
	// quarter of memory.budgetBytes (at least maxBodyBytes), or unbounded when that is 0.
	MaxInFlightBytes int64 `yaml:"maxInFlightBytes"`
	// MaxHeaderBytes bounds a request's header bytes (431 over it); MaxConnections the connections open at
	// once (more wait to be accepted).
	MaxHeaderBytes int `yaml:"maxHeaderBytes"`
	MaxConnections int `yaml:"maxConnections"`
}

// IngressInFlightBytes is the effective ingress.maxInFlightBytes (0: unbounded).
func (c Config) IngressInFlightBytes() int64 {
	if n := c.Ingress.MaxInFlightBytes; n > 0 {
		return n
	}
	if c.Memory.BudgetBytes <= 0 {
		return 0
	}
	return max(c.Memory.BudgetBytes/4, int64(c.Ingress.MaxBodyBytes))
}

// IngressTLS makes the ingress listener serve HTTPS when both files are set.
type IngressTLS struct {
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
}

// IngressIDHeadroom is what the ingress may add to a body (an assigned id): ingress.maxBodyBytes must stay
// this far under inbound.maxMessageBytes, or an accepted message could be too large for the pipeline.
const IngressIDHeadroom = 1024

// ChannelMap is the serviceIdentifier → channel table of both directions: channels, or the deprecated
// outbound.channels when channels is empty.
func (c Config) ChannelMap() map[string]string {
	if len(c.Channels) > 0 {
		return c.Channels
	}
	return c.Outbound.Channels
}

// Deprecations lists the deprecated keys in use, each with its replacement, for a warning at start-up.
func (c Config) Deprecations() []string {
	var out []string
	if len(c.Outbound.Channels) > 0 {
		out = append(out, "outbound.channels is deprecated: rename it to channels (one table for both directions)")
	}
	return out
}

// Admin configures the HTTP server for health and metrics.
type Admin struct {
	Address           string        `yaml:"address"`
	ReadHeaderTimeout time.Duration `yaml:"readHeaderTimeout"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Startup bounds the wait for the brokers when the service starts.
type Startup struct {
	// Timeout is how long `run` waits for the brokers to answer (retrying with backoff, readiness false)
	// before it exits with the cause: a pod that starts before Kafka waits instead of crash-looping.
	Timeout time.Duration `yaml:"timeout"`
}

// Shutdown bounds the drain on SIGTERM.
type Shutdown struct {
	Timeout time.Duration `yaml:"timeout"`
}

// PipelineReserve is the part of the timeout kept for the pipelines to drain and commit, even when a front
// door (the HTTP ingress) is slow to stop: a quarter of it, at most 5 s.
func (s Shutdown) PipelineReserve() time.Duration { return min(5*time.Second, s.Timeout/4) }

// FrontBudget is the part of the timeout the front doors have to answer the requests in flight.
func (s Shutdown) FrontBudget() time.Duration { return s.Timeout - s.PipelineReserve() }

// Default returns the configuration used when nothing overrides it.
func Default() Config {
	return Config{
		Kafka: Kafka{
			Brokers:        []string{"127.0.0.1:9092"},
			ClientID:       "cimstream",
			DialTimeout:    5 * time.Second,
			RequestTimeout: 10 * time.Second,
			MetadataTTL:    time.Second,
			SASL:           SASL{Mechanism: "none"},
			Producer: Producer{
				BatchTimeout: 100 * time.Microsecond,
				BatchSize:    1000,
				BatchBytes:   1<<20 + EnrichmentHeadroom,
				Compression:  "none",
				MaxAttempts:  10,
				WriteTimeout: 10 * time.Second,
			},
			Consumer: Consumer{
				GroupID:           "cimstream",
				MinBytes:          1,
				MaxBytes:          1 << 20,
				MaxWait:           100 * time.Millisecond,
				SessionTimeout:    10 * time.Second,
				RebalanceTimeout:  30 * time.Second,
				HeartbeatInterval: 3 * time.Second,
				CommitInterval:    200 * time.Millisecond,
				RevokeWait:        5 * time.Second,
				BatchSize:         500,
				Linger:            500 * time.Microsecond,
			},
		},
		Topics: Topics{
			InboundPattern:    InboundPattern(""),
			InboundChannels:   []string{InboundTopic("web"), InboundTopic("whatsapp")},
			CCMInbound:        "ccm.inbound",
			CCMOutbound:       "ccm.outbound",
			Notifications:     "cim.notifications",
			DeadLetter:        "cimstream.dlq",
			Sessions:          "cimstream.sessions",
			Repartition:       "cimstream.inbound.repartition",
			Partitions:        6,
			ReplicationFactor: 1,
		},
		Inbound: Inbound{
			Enabled:              true,
			SessionIdleTimeout:   30 * time.Minute,
			MaxMessageBytes:      1 << 20,
			MaxIDBytes:           1 << 10,
			TopicRefreshInterval: 10 * time.Second,
			ReplayWindow:         10 * time.Minute,
			SessionEvents:        true,
			FastPath:             true,
		},
		Outbound: Outbound{Enabled: true, AcceptedNotifications: true, Channels: map[string]string{}, DeliveryTimeout: 30 * time.Second},
		Channels: map[string]string{},
		Ingress: Ingress{
			MaxBodyBytes:          1<<20 - IngressIDHeadroom,
			ReadHeaderTimeout:     5 * time.Second,
			ReadTimeout:           15 * time.Second,
			IdleTimeout:           2 * time.Minute,
			MaxConcurrent:         512,
			ProduceTimeout:        5 * time.Second,
			RetryAfter:            time.Second,
			IdempotencyWindow:     10 * time.Minute,
			IdempotencyMaxEntries: 100_000,
			IdempotencyMaxBytes:   8 << 20,
			MaxHeaderBytes:        16 << 10,
			MaxConnections:        1024,
		},
		Admin:       Admin{Address: "127.0.0.1:8080", ReadHeaderTimeout: 5 * time.Second},
		Log:         Log{Level: "info", Format: "json"},
		Startup:     Startup{Timeout: 2 * time.Minute},
		Shutdown:    Shutdown{Timeout: 30 * time.Second},
		DeadLetters: DeadLetters{MaxValueBytes: 512 << 10},
		Memory:      Memory{BudgetBytes: 128 << 20},
		Egress: Egress{RequestTimeout: 10 * time.Second, Concurrency: 32, MaxInFlight: 1000,
			Retry: EgressRetry{MinBackoff: time.Second, MaxBackoff: time.Minute, Deadline: 10 * time.Minute}, SignatureV1: true},
	}
}

// FieldError is a problem with one key; Key is the dotted name a user writes in the file.
type FieldError struct {
	Key     string
	Problem string
}

func (e *FieldError) Error() string { return fmt.Sprintf("config %s: %s", e.Key, e.Problem) }

func fieldErr(key, format string, args ...any) error {
	return &FieldError{Key: key, Problem: fmt.Sprintf(format, args...)}
}

// Validate reports every problem, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(c.Kafka.Brokers) == 0 {
		add(fieldErr("kafka.brokers", "at least one broker address (host:port) is required"))
	}
	for _, b := range c.Kafka.Brokers {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			add(fieldErr("kafka.brokers", "%q is not host:port", b))
		}
	}
	add(positive("kafka.dialTimeout", c.Kafka.DialTimeout))
	add(positive("kafka.requestTimeout", c.Kafka.RequestTimeout))
	add(positive("kafka.metadataTTL", c.Kafka.MetadataTTL))
	// Any case: Kafka itself writes SCRAM-SHA-512.
	add(oneOf("kafka.sasl.mechanism", strings.ToLower(c.Kafka.SASL.Mechanism), "none", "plain", "scram-sha-256", "scram-sha-512"))
	if !strings.EqualFold(c.Kafka.SASL.Mechanism, "none") && c.Kafka.SASL.Username == "" {
		add(fieldErr("kafka.sasl.username", "required when kafka.sasl.mechanism is %s", c.Kafka.SASL.Mechanism))
	}
	if (c.Kafka.TLS.CertFile == "") != (c.Kafka.TLS.KeyFile == "") {
		add(fieldErr("kafka.tls.certFile", "certFile and keyFile go together"))
	}
	p := c.Kafka.Producer
	add(positive("kafka.producer.batchTimeout", p.BatchTimeout))
	add(atLeast("kafka.producer.batchSize", int64(p.BatchSize), 1))
	add(atLeast("kafka.producer.batchBytes", p.BatchBytes, 1024))
	add(oneOf("kafka.producer.compression", p.Compression, "none", "gzip", "snappy", "lz4", "zstd"))
	add(atLeast("kafka.producer.maxAttempts", int64(p.MaxAttempts), 1))
	add(positive("kafka.producer.writeTimeout", p.WriteTimeout))
	cs := c.Kafka.Consumer
	if strings.TrimSpace(cs.GroupID) == "" {
		add(fieldErr("kafka.consumer.groupId", "must not be empty"))
	}
	add(atLeast("kafka.consumer.minBytes", int64(cs.MinBytes), 1))
	add(atLeast("kafka.consumer.maxBytes", int64(cs.MaxBytes), int64(cs.MinBytes)))
	add(positive("kafka.consumer.maxWait", cs.MaxWait))
	add(positive("kafka.consumer.sessionTimeout", cs.SessionTimeout))
	add(positive("kafka.consumer.rebalanceTimeout", cs.RebalanceTimeout))
	add(positive("kafka.consumer.heartbeatInterval", cs.HeartbeatInterval))
	add(positive("kafka.consumer.commitInterval", cs.CommitInterval))
	add(positive("kafka.consumer.revokeWait", cs.RevokeWait))
	if cs.RevokeWait >= cs.RebalanceTimeout {
		add(fieldErr("kafka.consumer.revokeWait", "must be shorter than kafka.consumer.rebalanceTimeout"))
	}
	if cs.HeartbeatInterval >= cs.SessionTimeout {
		add(fieldErr("kafka.consumer.heartbeatInterval", "must be shorter than kafka.consumer.sessionTimeout"))
	}

	t := c.Topics
	if t.InboundPattern != "" {
		if _, err := regexp.Compile(t.InboundPattern); err != nil {
			add(fieldErr("topics.inboundPattern", "not a valid regular expression: %v", err))
		}
	}
	if len(t.Inbound) == 0 && t.InboundPattern == "" && c.Inbound.Enabled {
		add(fieldErr("topics.inbound", "set topics.inbound or topics.inboundPattern, or disable inbound.enabled"))
	}
	for key, name := range map[string]string{
		"topics.ccmInbound": t.CCMInbound, "topics.ccmOutbound": t.CCMOutbound,
		"topics.notifications": t.Notifications, "topics.deadLetter": t.DeadLetter, "topics.sessions": t.Sessions,
		"topics.repartition": t.Repartition,
	} {
		add(topicName(key, name))
	}
	for i, name := range append(append([]string{}, t.Inbound...), t.InboundChannels...) {
		add(topicName(fmt.Sprintf("topics.inbound[%d]", i), name))
	}
	if t.SessionEvents != "" {
		add(topicName("topics.sessionEvents", t.SessionEvents))
		// Events on an internal topic would corrupt it; on a connector topic they would come back in.
		for key, name := range map[string]string{"topics.sessions": t.Sessions, "topics.repartition": t.Repartition,
			"topics.deadLetter": t.DeadLetter, "topics.ccmOutbound": t.CCMOutbound, "topics.notifications": t.Notifications} {
			if t.SessionEvents == name {
				add(fieldErr("topics.sessionEvents", "must not be %s (%q): use topics.ccmInbound (empty) or a topic of its own", key, name))
			}
		}
		pattern, _ := regexp.Compile(t.InboundPattern) // as the pipeline matches (an invalid one is reported above)
		if slices.Contains(t.Inbound, t.SessionEvents) || slices.Contains(t.InboundChannels, t.SessionEvents) ||
			(t.InboundPattern != "" && pattern != nil && pattern.MatchString(t.SessionEvents)) {
			add(fieldErr("topics.sessionEvents", "%q is a connector topic (topics.inbound, topics.inboundChannels or topics.inboundPattern): events would come back in", t.SessionEvents))
		}
	}
	add(atLeast("topics.partitions", int64(t.Partitions), 1))
	add(atLeast("topics.replicationFactor", int64(t.ReplicationFactor), 1))

	add(positive("inbound.sessionIdleTimeout", c.Inbound.SessionIdleTimeout))
	for i, e := range c.Inbound.SessionIdleTimeouts {
		key := fmt.Sprintf("inbound.sessionIdleTimeouts[%d]", i)
		if strings.TrimSpace(e.ServiceIdentifier) == "" {
			add(fieldErr(key+".serviceIdentifier", "must name a serviceIdentifier or a glob such as \"4144*\""))
		} else if _, err := path.Match(e.ServiceIdentifier, ""); err != nil {
			add(fieldErr(key+".serviceIdentifier", "%q is not a valid glob: %v", e.ServiceIdentifier, err))
		}
		add(positive(key+".timeout", e.Timeout))
	}
	if w, least := c.Inbound.ReplayWindow, 2*(cs.SessionTimeout+cs.RebalanceTimeout); w < least {
		add(fieldErr("inbound.replayWindow", "%v is too short: it must be at least 2 × (kafka.consumer.sessionTimeout + kafka.consumer.rebalanceTimeout) = %v, twice the time a crashed member's partitions take to move",
			w, least))
	}
	add(atLeast("inbound.maxMessageBytes", int64(c.Inbound.MaxMessageBytes), 1024))
	if n := c.Inbound.MaxIDBytes; n < MinIDBytes || n > MaxIDBytes {
		add(fieldErr("inbound.maxIdBytes", "%d is out of range: it must be between %d (a UUID and then some) and %d (two sessions with every id at it must fit a key's state, 256 KiB)",
			n, MinIDBytes, MaxIDBytes))
	}
	if p.BatchBytes < int64(c.Inbound.MaxMessageBytes)+EnrichmentHeadroom {
		add(fieldErr("kafka.producer.batchBytes", "%d leaves no room for enrichment: it must be at least inbound.maxMessageBytes (%d) + %d",
			p.BatchBytes, c.Inbound.MaxMessageBytes, EnrichmentHeadroom))
	}
	if least := int64(session.MaxStateBytes) + EnrichmentHeadroom; c.Inbound.Enabled && p.BatchBytes < least {
		// The sessions stage writes a key's state once per batch (its latest): a state the client
		// refused for its size would lose every decision of the batch for that key, not one.
		add(fieldErr("kafka.producer.batchBytes", "%d cannot hold a session state: it must be at least the state cap (%d) + %d = %d",
			p.BatchBytes, session.MaxStateBytes, EnrichmentHeadroom, least))
	}
	add(atLeast("deadLetters.maxValueBytes", int64(c.DeadLetters.MaxValueBytes), 0))
	if int64(c.DeadLetters.MaxValueBytes) > p.BatchBytes-EnrichmentHeadroom {
		add(fieldErr("deadLetters.maxValueBytes", "%d must stay under kafka.producer.batchBytes (%d) - %d, room for the dead letter's headers",
			c.DeadLetters.MaxValueBytes, p.BatchBytes, EnrichmentHeadroom))
	}
	add(atLeast("memory.budgetBytes", c.Memory.BudgetBytes, 0))
	add(positive("inbound.topicRefreshInterval", c.Inbound.TopicRefreshInterval))
	add(atLeast("kafka.consumer.batchSize", int64(cs.BatchSize), 1))
	add(positive("kafka.consumer.linger", cs.Linger))
	add(positive("outbound.deliveryTimeout", c.Outbound.DeliveryTimeout))
	if len(c.Channels) > 0 && len(c.Outbound.Channels) > 0 {
		add(fieldErr("channels", "set only channels: outbound.channels is its deprecated spelling, and both are set"))
	}
	channelsKey := "channels"
	if len(c.Channels) == 0 && len(c.Outbound.Channels) > 0 {
		channelsKey = "outbound.channels"
	}
	for sid, ch := range c.ChannelMap() {
		if strings.TrimSpace(sid) == "" || !topicChars.MatchString(ch) {
			add(fieldErr(channelsKey, "entry %q: %q is not a usable channel name (letters, digits, . _ -)", sid, ch))
		}
	}
	c.validateIngress(add)

	for i, r := range c.Outbound.Routes {
		r.validate(fmt.Sprintf("outbound.routes[%d]", i), add)
	}
	if _, _, err := net.SplitHostPort(c.Admin.Address); err != nil {
		add(fieldErr("admin.address", "%q is not host:port", c.Admin.Address))
	}
	add(positive("admin.readHeaderTimeout", c.Admin.ReadHeaderTimeout))
	add(oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error"))
	add(oneOf("log.format", c.Log.Format, "json", "console"))
	add(positive("startup.timeout", c.Startup.Timeout))
	add(positive("shutdown.timeout", c.Shutdown.Timeout))
	c.Egress.validate(add)
	return errors.Join(errs...)
}

// The validate methods of the sections hand each problem to add, Validate's collector.

func (e Egress) validate(add func(error)) {
	add(positive("egress.requestTimeout", e.RequestTimeout))
	add(atLeast("egress.concurrency", int64(e.Concurrency), 1))
	add(atLeast("egress.maxInFlight", int64(e.MaxInFlight), 1))
	add(positive("egress.retry.minBackoff", e.Retry.MinBackoff))
	add(positive("egress.retry.maxBackoff", e.Retry.MaxBackoff))
	if e.Retry.MaxBackoff < e.Retry.MinBackoff {
		add(fieldErr("egress.retry.maxBackoff", "must be at least egress.retry.minBackoff (%v)", e.Retry.MinBackoff))
	}
	add(positive("egress.retry.deadline", e.Retry.Deadline))
	seen := map[string]bool{}
	for i, w := range e.Webhooks {
		key := fmt.Sprintf("egress.webhooks[%d]", i)
		switch {
		case !topicChars.MatchString(w.Channel):
			add(fieldErr(key+".channel", "%q is not a usable channel name (letters, digits, . _ -)", w.Channel))
		case seen[w.Channel]:
			add(fieldErr(key+".channel", "%q is configured twice", w.Channel))
		}
		seen[w.Channel] = true
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add(fieldErr(key+".url", "%q is not an absolute http(s) URL", w.URL))
		}
		if strings.TrimSpace(w.SecretFile) == "" {
			add(fieldErr(key+".secretFile", "required: the file holding the signing secret"))
		}
	}
}

func (c *Config) validateIngress(add func(error)) {
	in := c.Ingress
	if in.Address == "" {
		return
	}
	if _, port, err := net.SplitHostPort(in.Address); err != nil {
		add(fieldErr("ingress.address", "%q is not host:port", in.Address))
	} else if in.Address == c.Admin.Address && port != "0" {
		add(fieldErr("ingress.address", "%q is admin.address too: the ingress needs its own listener", in.Address))
	}
	if in.DefaultChannel != "" && !topicChars.MatchString(in.DefaultChannel) {
		add(fieldErr("ingress.defaultChannel", "%q is not a usable channel name (letters, digits, . _ -)", in.DefaultChannel))
	}
	if (in.TLS.CertFile == "") != (in.TLS.KeyFile == "") {
		add(fieldErr("ingress.tls.certFile", "ingress.tls.certFile and ingress.tls.keyFile go together"))
	}
	add(atLeast("ingress.maxBodyBytes", int64(in.MaxBodyBytes), 1))
	if limit := c.Inbound.MaxMessageBytes - IngressIDHeadroom; in.MaxBodyBytes > limit {
		add(fieldErr("ingress.maxBodyBytes", "%d must be at most inbound.maxMessageBytes - %d = %d (room for an assigned id)",
			in.MaxBodyBytes, IngressIDHeadroom, limit))
	}
	add(positive("ingress.readHeaderTimeout", in.ReadHeaderTimeout))
	add(positive("ingress.readTimeout", in.ReadTimeout))
	add(positive("ingress.idleTimeout", in.IdleTimeout))
	add(atLeast("ingress.maxConcurrent", int64(in.MaxConcurrent), 1))
	add(positive("ingress.produceTimeout", in.ProduceTimeout))
	// A request read just before SIGTERM must be answered within the ingress's part of the shutdown budget;
	// a slow body must not use up the pipelines' reserve for draining and committing.
	if need, have := in.ReadTimeout+in.ProduceTimeout+time.Second, c.Shutdown.FrontBudget(); in.ReadTimeout > 0 && need > have {
		add(fieldErr("ingress.readTimeout", "ingress.readTimeout (%v) + ingress.produceTimeout (%v) + 1s must be at most shutdown.timeout (%v) less the pipelines' reserve (%v) = %v: lower them or raise shutdown.timeout",
			in.ReadTimeout, in.ProduceTimeout, c.Shutdown.Timeout, c.Shutdown.PipelineReserve(), have))
	}
	add(positive("ingress.retryAfter", in.RetryAfter))
	add(positive("ingress.idempotencyWindow", in.IdempotencyWindow))
	add(atLeast("ingress.idempotencyMaxEntries", int64(in.IdempotencyMaxEntries), 1))
	add(atLeast("ingress.idempotencyMaxBytes", in.IdempotencyMaxBytes, 1))
	add(atLeast("ingress.maxHeaderBytes", int64(in.MaxHeaderBytes), 1024))
	add(atLeast("ingress.maxConnections", int64(in.MaxConnections), 1))
	add(atLeast("ingress.maxInFlightBytes", in.MaxInFlightBytes, 0))
	if n := in.MaxInFlightBytes; n > 0 && n < int64(in.MaxBodyBytes) {
		add(fieldErr("ingress.maxInFlightBytes", "%d must be at least ingress.maxBodyBytes (%d), or 0", n, in.MaxBodyBytes))
	}
	// What the ingress writes must reach the inbound pipeline of the same configuration.
	if c.Inbound.Enabled {
		var re *regexp.Regexp
		if c.Topics.InboundPattern != "" {
			re, _ = regexp.Compile(c.Topics.InboundPattern)
		}
		for _, ch := range c.IngressChannels() {
			topic := InboundTopic(ch)
			if !slices.Contains(c.Topics.Inbound, topic) && (re == nil || !re.MatchString(topic)) {
				add(fieldErr("ingress.address", "the ingress writes to %s, which neither topics.inbound nor topics.inboundPattern (%q) names: the inbound pipeline would never read it",
					topic, c.Topics.InboundPattern))
			}
		}
	}
}

// IngressChannels lists the channels the ingress may write to: those of the channels table and the
// default channel, sorted, without repeats.
func (c Config) IngressChannels() []string {
	out := slices.Collect(maps.Values(c.ChannelMap()))
	if ch := c.Ingress.DefaultChannel; ch != "" {
		out = append(out, ch)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// InboundTopic is the connector topic of a channel, where the ingress writes its messages. It and
// OutboundTopic are the only spellings of the connector topics' names.
func InboundTopic(channel string) string { return "cim.inbound." + channel }

// OutboundTopic is a channel's connector output: the default route's destination, a webhook's input.
func OutboundTopic(channel string) string { return "cim.outbound." + channel }

// InboundPattern matches every inbound connector topic named with prefix in front (the default
// topics.inboundPattern has none).
func InboundPattern(prefix string) string {
	return "^" + regexp.QuoteMeta(prefix+InboundTopic("")) + ".+$"
}

func (r Route) validate(key string, add func(error)) {
	if len(r.Destinations) == 0 {
		add(fieldErr(key+".destinations", "a route needs at least one destination topic"))
	}
	for j, d := range r.Destinations {
		add(topicName(fmt.Sprintf("%s.destinations[%d]", key, j), d))
	}
	if _, err := path.Match(r.ServiceIdentifier, ""); err != nil {
		add(fieldErr(key+".serviceIdentifier", "%q is not a valid glob: %v", r.ServiceIdentifier, err))
	}
}

var topicChars = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

func topicName(key, name string) error {
	if !topicChars.MatchString(name) || name == "." || name == ".." {
		return fieldErr(key, "%q is not a valid Kafka topic name (1-249 of letters, digits, . _ -)", name)
	}
	return nil
}

func positive(key string, d time.Duration) error {
	if d <= 0 {
		return fieldErr(key, "must be a positive duration such as 500ms or 10s, got %v", d)
	}
	return nil
}

func atLeast(key string, v, min int64) error {
	if v < min {
		return fieldErr(key, "must be at least %d, got %d", min, v)
	}
	return nil
}

func oneOf(key, v string, allowed ...string) error {
	if slices.Contains(allowed, v) {
		return nil
	}
	return fieldErr(key, "%q is not one of %s", v, strings.Join(allowed, ", "))
}
