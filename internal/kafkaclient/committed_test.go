package kafkaclient

import (
	"fmt"
	"slices"
	"testing"

	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/fetch"
)

// Batches as a fetch response decodes them: data batches (transactional or not) and control batches.

func data(pid int64, txn bool, base int64, values ...string) *protocol.RecordBatch {
	recs := make([]protocol.Record, len(values))
	for i, v := range values {
		recs[i] = protocol.Record{Offset: base + int64(i), Key: protocol.NewBytes([]byte("k")), Value: protocol.NewBytes([]byte(v)),
			Headers: []protocol.Header{{Key: "h", Value: []byte(v)}}}
	}
	b := &protocol.RecordBatch{BaseOffset: base, ProducerID: pid, Records: protocol.NewRecordReader(recs...)}
	if txn {
		b.Attributes = protocol.Transactional
	}
	return b
}

func marker(pid, offset int64, abort bool) *protocol.ControlBatch {
	typ := int16(1)
	if abort {
		typ = controlAbort
	}
	b := protocol.NewControlBatch(protocol.ControlRecord{Offset: offset, Type: typ})
	b.BaseOffset, b.ProducerID, b.Attributes = offset, pid, protocol.Control|protocol.Transactional
	return b
}

func aborted(pairs ...int64) []fetch.ResponseTransaction {
	var out []fetch.ResponseTransaction
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, fetch.ResponseTransaction{ProducerID: pairs[i], FirstOffset: pairs[i+1]})
	}
	return out
}

func TestFilterCommitted(t *testing.T) {
	const p1, p2 = 1001, 1002
	cases := []struct {
		name    string
		from    int64
		batches []protocol.RecordReader
		aborted []fetch.ResponseTransaction
		want    []string // "offset=value"
		next    int64
	}{
		{name: "no transactions", from: 0,
			batches: []protocol.RecordReader{data(-1, false, 0, "a", "b"), data(-1, false, 2, "c")},
			want:    []string{"0=a", "1=b", "2=c"}, next: 3},
		{name: "commit marker is no record", from: 0,
			batches: []protocol.RecordReader{data(p1, true, 0, "c1"), marker(p1, 1, false)},
			want:    []string{"0=c1"}, next: 2},
		{name: "a control batch alone", from: 5,
			batches: []protocol.RecordReader{marker(p1, 5, false)},
			next:    6},
		{name: "aborted transaction dropped up to its marker", from: 0,
			batches: []protocol.RecordReader{data(p1, true, 0, "c1"), marker(p1, 1, false), data(p1, true, 2, "a1", "a2"), marker(p1, 4, true), data(p1, true, 5, "c2"), marker(p1, 6, false)},
			aborted: aborted(p1, 2),
			want:    []string{"0=c1", "5=c2"}, next: 7},
		{name: "interleaved producers: one aborts, one commits, one without transactions", from: 0,
			batches: []protocol.RecordReader{
				data(p1, true, 0, "p1-a"), data(p2, true, 1, "p2-c"), data(-1, false, 2, "plain"), data(p1, true, 3, "p1-b"),
				marker(p2, 4, false), marker(p1, 5, true), data(p2, true, 6, "p2-d"), marker(p2, 7, false),
			},
			aborted: aborted(p1, 0),
			want:    []string{"1=p2-c", "2=plain", "6=p2-d"}, next: 8},
		{name: "abort marker with no aborted data in this fetch; the producer's next transaction kept", from: 5,
			batches: []protocol.RecordReader{marker(p1, 5, true), data(p1, true, 6, "next"), marker(p1, 7, false)},
			aborted: aborted(p1, 2),
			want:    []string{"6=next"}, next: 8},
		{name: "aborted list out of order, another producer's abort further on", from: 0,
			batches: []protocol.RecordReader{data(p2, true, 0, "p2-c"), marker(p2, 1, false), data(p1, true, 2, "p1-a"), marker(p1, 3, true), data(p2, true, 4, "p2-a"), marker(p2, 5, true)},
			aborted: aborted(p2, 4, p1, 2),
			want:    []string{"0=p2-c"}, next: 6},
		{name: "batch beginning before the offset asked for", from: 2,
			batches: []protocol.RecordReader{data(-1, false, 0, "x", "y", "z", "w")},
			want:    []string{"2=z", "3=w"}, next: 4},
		{name: "a gap between batches (compacted) moves the next offset", from: 0,
			batches: []protocol.RecordReader{data(-1, false, 0, "a"), data(-1, false, 10)},
			want:    []string{"0=a"}, next: 10},
		{name: "nothing fetched", from: 42, next: 42},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := filterCommitted("topic", 3, 99, c.batches, c.aborted, c.from)
			if err != nil {
				t.Fatal(err)
			}
			var vals []string
			var bytes int64
			for _, m := range got.Records {
				vals = append(vals, fmt.Sprintf("%d=%s", m.Offset, m.Value))
				if m.Topic != "topic" || m.Partition != 3 || m.HighWaterMark != 99 || string(m.Key) != "k" ||
					len(m.Headers) != 1 || string(m.Headers[0].Value) != string(m.Value) {
					t.Errorf("record %d: %+v", m.Offset, m)
				}
				bytes += int64(len(m.Key) + len(m.Value))
			}
			if !slices.Equal(vals, c.want) || got.Next != c.next || got.Bytes != bytes {
				t.Errorf("kept %v next %d bytes %d; want %v next %d bytes %d", vals, got.Next, got.Bytes, c.want, c.next, bytes)
			}
		})
	}
}
