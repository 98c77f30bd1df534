package kafkaclient

import (
	"errors"
	"io"
	"sort"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/fetch"
)

// Why this file exists: kafka-go v0.4.51 sends a fetch's isolation level but ignores what read_committed
// needs of the client. Its Reader parses the response's aborted-transactions list and throws it away, and
// never looks at a batch's transactional and control bits: with IsolationLevel ReadCommitted it stops at
// the last stable offset, yet still returns the records of aborted transactions and every commit or
// abort marker as an ordinary message (key 00 00 00 0t). The broker leaves that filtering to the client,
// so it is done here, the way the Java consumer does it.

// controlAbort is the type of an abort marker's control record (commit is 1).
const controlAbort = 0

// committedFetch is what one read_committed fetch response yields: the records a consumer may see, in
// offset order, and the offset to fetch next (past markers and aborted records, which are not records
// to anyone downstream).
type committedFetch struct {
	Records []kafka.Message
	Next    int64
	Bytes   int64 // keys and values of Records
}

// filterCommitted applies read_committed to the batches of one fetch response of topic/partition that
// started at offset from, given the response's aborted transactions (producer id and first offset of each
// aborted transaction overlapping the response), as the Java consumer does: an aborted transaction's
// first offset puts its producer in the aborted set once a batch reaches it; a transactional batch of a
// producer in that set is dropped; that producer's abort marker takes it out again; control batches are
// never records. Records below from (a batch begins before the offset asked for) are left out.
func filterCommitted(topic string, partition int, highWatermark int64, batches []protocol.RecordReader, aborted []fetch.ResponseTransaction, from int64) (committedFetch, error) {
	out := committedFetch{Next: from}
	pending := append([]fetch.ResponseTransaction(nil), aborted...)
	sort.Slice(pending, func(i, j int) bool { return pending[i].FirstOffset < pending[j].FirstOffset })
	abortedBy := map[int64]bool{}
	// upTo moves the aborted transactions beginning at or before offset into the aborted set.
	upTo := func(offset int64) {
		for len(pending) > 0 && pending[0].FirstOffset <= offset {
			abortedBy[pending[0].ProducerID] = true
			pending = pending[1:]
		}
	}
	// keep adds the records of a batch at or past from.
	keep := func(recs []kafka.Message) {
		for _, m := range recs {
			if m.Offset >= from {
				out.Records = append(out.Records, m)
				out.Bytes += int64(len(m.Key) + len(m.Value))
			}
		}
	}
	for _, b := range batches {
		switch b := b.(type) {
		case *protocol.ControlBatch:
			// A batch begins where the one before ended: offsets between are compacted away.
			out.Next = max(out.Next, b.BaseOffset)
			last, abort, err := readControl(b)
			if err != nil {
				return out, err
			}
			upTo(last)
			if abort {
				delete(abortedBy, b.ProducerID)
			}
			out.Next = max(out.Next, last+1)
		case *protocol.RecordBatch:
			out.Next = max(out.Next, b.BaseOffset)
			recs, err := readRecords(b, topic, partition, highWatermark, from)
			if err != nil {
				return out, err
			}
			last := b.BaseOffset
			if len(recs) > 0 {
				last = recs[len(recs)-1].Offset
			}
			if b.ProducerID >= 0 {
				upTo(last)
			}
			if len(recs) > 0 {
				out.Next = max(out.Next, last+1)
			}
			if !b.Attributes.Transactional() || !abortedBy[b.ProducerID] {
				keep(recs)
			}
		default: // a v0/v1 message set: no transactions
			recs, err := readRecords(b, topic, partition, highWatermark, from)
			if err != nil {
				return out, err
			}
			keep(recs)
			for _, m := range recs {
				out.Next = max(out.Next, m.Offset+1)
			}
		}
	}
	return out, nil
}

// readControl reads a control batch: its last offset and whether it is an abort marker.
func readControl(b *protocol.ControlBatch) (last int64, abort bool, err error) {
	last = b.BaseOffset
	for first := true; ; first = false {
		cr, err := b.ReadControlRecord()
		if errors.Is(err, io.EOF) {
			return last, abort, nil
		}
		if err != nil {
			return last, abort, err
		}
		last = max(last, cr.Offset)
		if first {
			abort = cr.Type == controlAbort
		}
	}
}

// readRecords copies a batch's records out of the response's buffers (they are reused once read).
// Records below from are only counted for their offsets, not copied.
func readRecords(b protocol.RecordReader, topic string, partition int, highWatermark, from int64) ([]kafka.Message, error) {
	var out []kafka.Message
	for {
		r, err := b.ReadRecord()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			// A batch cut short at the end of the response: the records before the cut are whole.
			if len(out) > 0 {
				return out, nil
			}
			return nil, err
		}
		m := kafka.Message{Topic: topic, Partition: partition, Offset: r.Offset, HighWaterMark: highWatermark, Time: r.Time}
		if r.Offset >= from {
			if m.Key, err = protocol.ReadAll(r.Key); err == nil {
				m.Value, err = protocol.ReadAll(r.Value)
			}
			if err != nil {
				closeRecord(r)
				return nil, err
			}
			if len(r.Headers) > 0 {
				// Decoded into slices of their own, but the slice of headers is reused by the next record.
				m.Headers = append([]kafka.Header(nil), r.Headers...)
			}
		}
		closeRecord(r)
		out = append(out, m)
	}
}

func closeRecord(r *protocol.Record) {
	if r.Key != nil {
		r.Key.Close()
	}
	if r.Value != nil {
		r.Value.Close()
	}
}
