// Package kafkaclient builds every kafka-go client cimstream uses, with each field set explicitly.
//
// kafka-go's zero values are traps (acks=0, a round-robin balancer, a 1 s batch timeout, synchronous
// per-message commits, a shared metadata cache): nothing else in cimstream constructs a kafka-go client,
// so these choices are made once, here.
package kafkaclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/cimstream/cimstream/internal/config"
)

// Factory builds writers, group consumers and admin clients from one configuration.
type Factory struct {
	cfg       config.Kafka
	tls       *tls.Config
	mechanism sasl.Mechanism

	clientOnce sync.Once
	client     *kafka.Client
	transport  *kafka.Transport // the shared client's, under its request counter

	fetcherOnce sync.Once
	readFetcher *fetcher // the readers' fetches, one request per broker (fetcher.go)
}

// New checks the TLS and SASL settings (files readable, mechanism known) and returns a Factory.
func New(cfg config.Kafka) (*Factory, error) {
	f := &Factory{cfg: cfg}
	var err error
	if f.tls, err = tlsConfig(cfg.TLS); err != nil {
		return nil, err
	}
	if f.mechanism, err = saslMechanism(cfg.SASL); err != nil {
		return nil, err
	}
	return f, nil
}

// Producer returns the write settings.
func (f *Factory) Producer() config.Producer { return f.cfg.Producer }

// MetadataTTL is how long topic metadata may be cached.
func (f *Factory) MetadataTTL() time.Duration { return f.cfg.MetadataTTL }

// Brokers returns the bootstrap addresses.
func (f *Factory) Brokers() []string { return f.cfg.Brokers }

// Transport returns a new transport for writers and admin clients. Each writer gets its own so that
// kafka.DefaultTransport's 6 s metadata cache never hides a topic created moments ago.
func (f *Factory) Transport() *kafka.Transport {
	return &kafka.Transport{
		Dial:        (&net.Dialer{Timeout: f.cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		DialTimeout: f.cfg.DialTimeout,
		IdleTimeout: 30 * time.Second,
		MetadataTTL: f.cfg.MetadataTTL,
		ClientID:    f.cfg.ClientID,
		TLS:         f.tls,
		SASL:        f.mechanism,
	}
}

// Dialer returns the dialer used by readers and consumer groups.
func (f *Factory) Dialer() *kafka.Dialer {
	return &kafka.Dialer{
		ClientID:      f.cfg.ClientID,
		Timeout:       f.cfg.DialTimeout,
		DualStack:     false,
		KeepAlive:     30 * time.Second,
		TLS:           f.tls,
		SASLMechanism: f.mechanism,
	}
}

// Client returns the factory's admin and metadata client, one for all callers.
//
// It is shared on purpose: a kafka.Transport starts, on first use, a connection pool whose goroutine
// re-reads the whole cluster's metadata every MetadataTTL (on average every TTL/2) and keeps a
// connection open until the transport is closed. A new client per call (as periodic callers such as
// the upstream watermark watch make several times a second) leaked one such pool each: after a minute
// of running hundreds of pools polled the broker hundreds of times a second, which took the broker's
// CPU from the data path and multiplied end-to-end latency. The shared transport's metadata is at most
// MetadataTTL old, and it is refreshed at once for topics this client creates.
func (f *Factory) Client() *kafka.Client {
	f.clientOnce.Do(func() {
		f.transport = f.Transport()
		f.client = &kafka.Client{
			Addr:      kafka.TCP(f.cfg.Brokers...),
			Timeout:   f.cfg.RequestTimeout,
			Transport: countingTransport{next: f.transport},
		}
	})
	return f.client
}

// Close closes the shared client's connections and stops its metadata refresh.
func (f *Factory) Close() {
	f.clientOnce.Do(func() {}) // no client made later
	if f.transport != nil {
		f.transport.CloseIdleConnections()
	}
}

// Writer returns a writer with acks=all. Topic is empty for writers that name the topic per message.
//
// Balancer: Murmur2, the Java client's default partitioner, so a record keyed by conversationId (or
// channelCustomerIdentifier) lands on the partition a Java producer (the CCM, Kafka Streams) would pick
// for the same key; co-partitioning with topics produced by other clients then holds.
func (f *Factory) Writer(topic string) *kafka.Writer {
	p := f.cfg.Producer
	return &kafka.Writer{
		Addr:                   kafka.TCP(f.cfg.Brokers...),
		Topic:                  topic,
		Balancer:               &kafka.Murmur2Balancer{},
		MaxAttempts:            p.MaxAttempts,
		WriteBackoffMin:        50 * time.Millisecond,
		WriteBackoffMax:        time.Second,
		BatchSize:              p.BatchSize,
		BatchBytes:             p.BatchBytes,
		BatchTimeout:           p.BatchTimeout,
		ReadTimeout:            p.WriteTimeout,
		WriteTimeout:           p.WriteTimeout,
		RequiredAcks:           kafka.RequireAll,
		Async:                  false,
		Compression:            Compression(p.Compression),
		AllowAutoTopicCreation: false,
		Transport:              f.Transport(),
	}
}

// GroupConfig returns the consumer-group settings for the given topics. A partition with no committed
// offset is read from its beginning (contract: nothing is lost when a topic appears later).
func (f *Factory) GroupConfig(groupID string, topics []string) kafka.ConsumerGroupConfig {
	c := f.cfg.Consumer
	return kafka.ConsumerGroupConfig{
		ID:                     groupID,
		Brokers:                f.cfg.Brokers,
		Dialer:                 f.Dialer(),
		Topics:                 topics,
		GroupBalancers:         []kafka.GroupBalancer{kafka.RangeGroupBalancer{}},
		HeartbeatInterval:      c.HeartbeatInterval,
		PartitionWatchInterval: 5 * time.Second,
		WatchPartitionChanges:  true,
		SessionTimeout:         c.SessionTimeout,
		RebalanceTimeout:       c.RebalanceTimeout,
		JoinGroupBackoff:       time.Second,
		RetentionTime:          7 * 24 * time.Hour,
		StartOffset:            kafka.FirstOffset,
		Timeout:                f.cfg.RequestTimeout,
	}
}

// Ping asks the cluster for metadata; the error says which broker address failed and how.
func (f *Factory) Ping(ctx context.Context) (*kafka.MetadataResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.RequestTimeout)
	defer cancel()
	md, err := f.Client().Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return nil, Explain(fmt.Errorf("connect to kafka at %s: %w", strings.Join(f.cfg.Brokers, ","), err))
	}
	return md, nil
}

// Explain adds a hint to errors whose kafka-go wording hides the cause (a TLS mismatch shows as EOF).
func Explain(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return fmt.Errorf("%w (the broker closed the connection: check kafka.tls and kafka.sasl match the listener)", err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w (nothing listens there: check kafka.brokers)", err)
	case errors.Is(err, kafka.SASLAuthenticationFailed):
		return fmt.Errorf("%w (check kafka.sasl.username and the password)", err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w (no answer in time: check kafka.brokers and the network)", err)
	}
	var uerr x509.UnknownAuthorityError
	if errors.As(err, &uerr) {
		return fmt.Errorf("%w (the broker's certificate is not signed by kafka.tls.caFile)", err)
	}
	return err
}

// Compression is the codec named in kafka.producer.compression; any other name is none.
func Compression(name string) kafka.Compression {
	codecs := map[string]kafka.Compression{"gzip": kafka.Gzip, "snappy": kafka.Snappy, "lz4": kafka.Lz4, "zstd": kafka.Zstd}
	if c, ok := codecs[name]; ok {
		return c
	}
	return compress.None
}

func tlsConfig(c config.TLS) (*tls.Config, error) {
	if !c.Enabled {
		return nil, nil
	}
	out := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify} //nolint:gosec // opt-in, documented
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, &config.FieldError{Key: "kafka.tls.caFile", Problem: fmt.Sprintf("cannot read: %v", err)}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &config.FieldError{Key: "kafka.tls.caFile", Problem: "no PEM certificate found in " + c.CAFile}
		}
		out.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, &config.FieldError{Key: "kafka.tls.certFile", Problem: fmt.Sprintf("cannot load the client certificate: %v", err)}
		}
		out.Certificates = []tls.Certificate{cert}
	}
	return out, nil
}

func saslMechanism(c config.SASL) (sasl.Mechanism, error) {
	switch strings.ToLower(c.Mechanism) {
	case "", "none":
		return nil, nil
	case "plain":
		return plain.Mechanism{Username: c.Username, Password: c.Password}, nil
	case "scram-sha-256", "scram-sha-512":
		algo := scram.SHA256
		if strings.EqualFold(c.Mechanism, "scram-sha-512") {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, c.Username, c.Password)
		if err != nil {
			return nil, &config.FieldError{Key: "kafka.sasl", Problem: err.Error()}
		}
		return m, nil
	}
	return nil, &config.FieldError{Key: "kafka.sasl.mechanism", Problem: "unknown mechanism " + c.Mechanism}
}

// NextGeneration waits for the group's next generation. Errors the group recovers from by itself
// (no coordinator yet on a fresh cluster, a rebalance in progress) are retried until ctx ends.
func NextGeneration(ctx context.Context, cg *kafka.ConsumerGroup) (*kafka.Generation, error) {
	for {
		gen, err := cg.Next(ctx)
		if err == nil {
			return gen, nil
		}
		if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) || !isRetriable(err) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func isRetriable(err error) bool {
	var kerr kafka.Error
	if errors.As(err, &kerr) {
		return kerr.Temporary()
	}
	return true // network errors: the group reconnects on its own
}
