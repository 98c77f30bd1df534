package kafkaclient_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

// Transactions written with the Java client: one committed, one aborted, one committed, one left open.
// The partition reader returns the committed records only, never a marker; it stops at the open
// transaction (its Offset is the last stable offset) and goes on once it commits.
func TestIntegrationPartitionReaderReadCommitted(t *testing.T) {
	f := kafkatest.Factory(t)
	topic := kafkatest.Topic(t, "txn", 1)
	p := kafkatest.NewTxnProducer(t)
	for _, step := range []struct {
		value  string
		commit bool
	}{{"c1", true}, {"a1", false}, {"c2", true}} {
		p.Begin()
		p.Send(topic, 0, "k", step.value)
		if step.commit {
			p.Commit()
		} else {
			p.Abort()
		}
	}
	p.Begin()
	open := p.Send(topic, 0, "k", "o1") // offset 6: 0 c1, 1 commit, 2 a1, 3 abort, 4 c2, 5 commit

	r, err := f.PartitionReader(topic, 0, kafka.FirstOffset)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	read := func(wait time.Duration) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		m, err := r.FetchMessage(ctx)
		return string(m.Value), err
	}
	for _, want := range []string{"c1", "c2"} {
		if got, err := read(10 * time.Second); err != nil || got != want {
			t.Fatalf("read %q, %v; want %q", got, err, want)
		}
	}
	if got, err := read(2 * time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read %q, %v past the last stable offset; want nothing until the transaction ends", got, err)
	}
	if r.Offset() != open {
		t.Errorf("reader at %d, want %d (the open transaction's first offset)", r.Offset(), open)
	}
	if _, end, err := kafkaclient.CommittedBounds(context.Background(), f.Client(), topic, 0); err != nil || end != open {
		t.Errorf("last stable offset %d, %v; want %d", end, err, open)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if _, err := r.FetchBefore(ctx, open); !errors.Is(err, io.EOF) {
		t.Errorf("FetchBefore(last stable offset) = %v, want io.EOF at once", err)
	}
	cancel()

	p.Commit()
	if got, err := read(10 * time.Second); err != nil || got != "o1" {
		t.Fatalf("read %q, %v after the commit; want o1", got, err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := r.FetchBefore(ctx, open+2); !errors.Is(err, io.EOF) || r.Offset() != open+2 {
		t.Errorf("FetchBefore(end) = %v at %d; want io.EOF at %d, past the commit marker", err, r.Offset(), open+2)
	}
}
