package inbound

import (
	"bytes"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/session"
	"github.com/cimstream/cimstream/internal/stream"
)

// decodeOnceInputs are message shapes whose normalization edits differ: id, timestamp, sender type
// and customer filled or kept, whitespace, escaped keys, a string timestamp, ids carried, START_CHAT,
// END_CHAT, NOTIFICATION, replies without channelData, the benchmark's 1 KiB message.
func decodeOnceInputs(t *testing.T) []string {
	t.Helper()
	bench, err := os.ReadFile("../../pkg/cim/testdata/bench/plain-1k.json")
	if err != nil {
		t.Fatal(err)
	}
	cd := func(c string) string {
		return `"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"` + c + `","customerFirstName":" Ann ","customerLastName":"Lee"}`
	}
	return []string{
		string(bench),
		`{"header":{"sender":{"id":"w","type":"connector","senderName":"W"},` + cd("a") + `,"customer":null},"body":{"type":"PLAIN","markdownText":"1"}}`,
		" {\n \"header\" : { \"sender\":{\"id\":\"w\",\"type\":\"Connector\",\"senderName\":\"W\"} , " + cd("a") + " } , \"body\" : {\"type\":\"PLAIN\",\"markdownText\":\"2\"} } ",
		`{"\u0069d":"m3","header":{"timestamp":"2026-12-03T09:00:00Z","sender":{"id":"w","type":"CONNECTOR","senderName":"W"},` + cd("b") + `,"conversation\u0049d":null},"body":{"type":"PLAIN","markdownText":"3"}}`,
		`{"id":"m4","header":{"timestamp":1764752400000,"sender":{"id":"w","type":"CONNECTOR","senderName":"W"},` + cd("b") + `,"intent":"START_CHAT","customer":{"id":"x","firstName":"B"}},"body":{"type":"PLAIN","markdownText":"4"}}`,
		`{"id":"m5","header":{"sender":{"id":"w","type":"CONNECTOR","senderName":"W"},` + cd("a") + `,"channelSessionId":"s-1","conversationId":"c-1"},"body":{"type":"PLAIN","markdownText":"5"}}`,
		`{"header":{"sender":{"id":"w","type":"CONNECTOR","senderName":"W"},` + cd("a") + `},"body":{"type":"NOTIFICATION","notificationType":"TYPING"}}`,
		`{"header":{"sender":{"id":"w","type":"CONNECTOR","senderName":"W"},` + cd("b") + `,"intent":"END_CHAT"},"body":{"type":"PLAIN","markdownText":"7"}}`,
		`{"header":{"sender":{"id":"w","type":"bot","senderName":"W"},"conversationId":"conv-9"},"body":{"type":"PLAIN","markdownText":"8"}}`,
		`{"header":{"sender":{"id":"w","type":"CONNECTOR","senderName":"W"},` + cd("c") + `},"body":{"type":"PLAIN","markdownText":"\u00e9\"9\""}}`,
	}
}

// The fast path decodes a record once: the enricher takes the normalizer's decoded output. Its CCM
// records, events and changelog states are byte for byte those of the enricher decoding the
// repartition record's bytes.
func TestDecodeOnceMatchesDecodingTheBytes(t *testing.T) {
	clk := &clock{now: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	n := NewNormalizer(testTopics, 1<<20, nil)
	newEnricher := func() *Enricher {
		return NewEnricher(testTopics, "sessions", 0, session.Fixed(2*time.Minute), nil, clk.Now).WithEvents(testTopics.CCM)
	}
	decoding, once := newEnricher(), newEnricher()
	base := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	compared := 0
	for round := range 3 {
		for i, v := range decodeOnceInputs(t) {
			rec := stream.Record{Topic: "cim.inbound.web", Offset: int64(round*100 + i), Key: []byte("k"), Value: []byte(v),
				Time: base.Add(time.Duration(round*100+i) * time.Minute)}
			slow := n.Process(rec)
			fast, m := n.process(rec, true)
			if len(slow.Reject) > 0 {
				t.Fatalf("input %d rejected: %v", i, slow.Reject)
			}
			if m == nil || !bytes.Equal(m.Raw(), fast.Outputs[0].Value) || !bytes.Equal(slow.Outputs[0].Value, fast.Outputs[0].Value) {
				t.Fatalf("input %d: the normalizer's decoded output is not its bytes", i)
			}
			o := slow.Outputs[0]
			back := stream.Record{Topic: testTopics.Repartition, Offset: int64(round*100 + i), Key: o.Key, Value: o.Value, Headers: o.Headers, Time: o.Time}
			want, got := decoding.Process(back), once.ProcessMessage(back, m)
			if a, b := fmt.Sprint(outputsOf(want)), fmt.Sprint(outputsOf(got)); a != b || len(got.Reject) != len(want.Reject) {
				t.Fatalf("input %d:\ndecoded once: %s\ndecoding the bytes: %s", i, b, a)
			}
			compared += len(got.Outputs)
		}
	}
	if compared < 40 {
		t.Fatalf("only %d outputs compared", compared)
	}
}

func outputsOf(r stream.Result) []string {
	var out []string
	for _, o := range r.Outputs {
		out = append(out, fmt.Sprintf("%s/%d %q=%s @%d %v", o.Topic, o.Partition, o.Key, o.Value, o.Time.UnixMilli(), o.Headers))
	}
	return out
}
