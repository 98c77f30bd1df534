package deadletter

import (
	"testing"

	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/pkg/cim"
)

func TestDeadLetterNamesItsInput(t *testing.T) {
	rec := stream.Record{Topic: "ccm.outbound", Partition: 3, Offset: 42, Key: []byte("k"), Value: []byte("v"),
		Headers: []stream.Header{{Key: "trace", Value: []byte("t")}}}
	out := New("dlq", "outbound", rec, cim.Violations{{Code: cim.CodeRequired, Message: "x"}})
	if out.Source != 42 {
		t.Fatalf("Source = %d, want the input offset 42", out.Source)
	}
	got := stream.Record{Headers: out.Headers}
	for key, want := range map[string]string{"trace": "t", HeaderCodes: "required", HeaderPipeline: "outbound",
		stream.HeaderSourceTopic: "ccm.outbound", stream.HeaderSourcePartition: "3", stream.HeaderSourceOffset: "42"} {
		if v, _ := got.Header(key); string(v) != want {
			t.Errorf("header %s = %q, want %q", key, v, want)
		}
	}
	if string(out.Key) != "k" || string(out.Value) != "v" || out.Topic != "dlq" {
		t.Errorf("original key and value must be kept: %+v", out)
	}
}
