package deadletter

import (
	"testing"

	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/pkg/cim"
)

func TestDeadLetterNamesItsInput(t *testing.T) {
	rec := stream.Record{Topic: "ccm.outbound", Partition: 3, Offset: 42, Key: []byte("k"), Value: []byte("v"),
		Headers: []stream.Header{{Key: "trace", Value: []byte("t")}}}
	out := Builder{Topic: "dlq", Pipeline: "outbound"}.Build(rec, cim.Violations{{Code: cim.CodeRequired, Message: "x"}})
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

// TestTruncatedAndShrunk: a value over the cap is cut with its original size in a header; a dead letter
// the broker still refuses drops the value and foreign headers, then the key and the long detail.
func TestTruncatedAndShrunk(t *testing.T) {
	big := make([]byte, 3000)
	rec := stream.Record{Topic: "in", Offset: 9, Key: []byte("key"), Value: big,
		Headers: []stream.Header{{Key: "huge", Value: big}}}
	var vs cim.Violations
	for range 400 {
		vs = append(vs, cim.Violation{Path: "body.x", Code: cim.CodeTooLarge, Message: "a long sentence about the size"})
	}
	b := Builder{Topic: "dlq", Pipeline: "inbound", MaxValueBytes: 1000}
	dl := b.Build(rec, vs)
	h := stream.Record{Headers: dl.Headers}
	if size, _ := h.Header(HeaderOriginalSize); len(dl.Value) != 1000 || string(size) != "3000" {
		t.Fatalf("value %d bytes, original size %q; want 1000 and 3000", len(dl.Value), size)
	}
	if at, _ := (stream.Record{Headers: b.Build(stream.Record{Value: big[:1000]}, vs).Headers}).Header(HeaderTruncated); at != nil {
		t.Fatal("a value exactly at the cap is not truncated")
	}
	first, ok := Shrink(dl, rec)
	h = stream.Record{Headers: first.Headers}
	if !ok || len(first.Value) != 0 || string(first.Key) != "key" {
		t.Fatalf("first shrink keeps the key and drops the value: %+v", first)
	}
	if _, foreign := h.Header("huge"); foreign {
		t.Fatal("first shrink drops the original headers")
	}
	if codes, _ := h.Header(HeaderCodes); string(codes) != "too_large" {
		t.Fatalf("codes %q", codes)
	}
	second, ok := Shrink(first, rec)
	detail, _ := (stream.Record{Headers: second.Headers}).Header(HeaderDetail)
	if !ok || second.Key != nil || len(detail) > shortDetail {
		t.Fatalf("second shrink drops the key and cuts the detail to %d: key %q, detail %d bytes", shortDetail, second.Key, len(detail))
	}
	if _, more := Shrink(second, rec); more {
		t.Fatal("a third shrink has nothing left to take")
	}
	if src, _ := (stream.Record{Headers: second.Headers}).Header(stream.HeaderSourceOffset); string(src) != "9" {
		t.Fatal("the smallest dead letter still names its source")
	}
}
