package inbound

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/session"
	"github.com/cimstream/cimstream/internal/stream"
)

var testTopics = Topics{Repartition: "rep", CCM: "ccm", Notifications: "notes"}

func rec(offset int64, key, value string) stream.Record {
	return stream.Record{Topic: "cim.inbound.web", Partition: 2, Offset: offset, Key: []byte(key), Value: []byte(value),
		Headers: []stream.Header{{Key: "trace", Value: []byte("t-1")}}, Time: time.UnixMilli(1732400000000)}
}

type counting struct{ unknown int }

func (c *counting) UnknownIntent(string) { c.unknown++ }
func (c *counting) Routed(int, int)      {}

// only is the single output of an accepted record.
func only(t testing.TB, r stream.Result) stream.Output {
	t.Helper()
	if len(r.Reject) > 0 || len(r.Outputs) != 1 {
		t.Fatalf("want exactly one output, got %d (rejected: %v)", len(r.Outputs), r.Reject)
	}
	return r.Outputs[0]
}

func TestNormalizerFillsAndRekeys(t *testing.T) {
	obs := &counting{}
	n := NewNormalizer(testTopics, 1<<20, obs)
	in := `{"header":{"sender":{"id":"w","type":"connector","senderName":"W"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"c1","customerFirstName":" Ann ","customerLastName":"Lee"},"intent":"WAVE","x":1},"body":{"type":"PLAIN","markdownText":"hi"}}`
	out := only(t, n.Process(rec(7, "anything", in)))
	if out.Topic != "rep" || string(out.Key) != session.Key("web", "c1") {
		t.Fatalf("want the repartition topic keyed by customer, got %s %q", out.Topic, out.Key)
	}
	var m map[string]any
	if err := json.Unmarshal(out.Value, &m); err != nil {
		t.Fatal(err)
	}
	h := m["header"].(map[string]any)
	if m["id"] != session.DeriveID("message", "cim.inbound.web", "2", "7") {
		t.Errorf("id = %v, want the id derived from the record coordinates", m["id"])
	}
	if h["timestamp"].(float64) != 1732400000000 || h["sender"].(map[string]any)["type"] != "CONNECTOR" {
		t.Errorf("timestamp/sender not normalized: %v", h)
	}
	cust := h["customer"].(map[string]any)
	if cust["firstName"] != "Ann Lee" || cust["isAnonymous"] != false || cust["id"] != session.DeriveID("customer", "web", "c1") {
		t.Errorf("customer = %v", cust)
	}
	if h["x"].(float64) != 1 || obs.unknown != 1 {
		t.Errorf("unknown field lost or unknown intent not counted (%d)", obs.unknown)
	}
	again := only(t, n.Process(rec(7, "anything", in)))
	if !bytes.Equal(again.Value, out.Value) {
		t.Error("reprocessing the same record must give the same bytes")
	}
	if src, _ := (stream.Record{Headers: out.Headers}).Header(stream.HeaderSourceOffset); string(src) != "7" {
		t.Errorf("source offset header = %q", src)
	}
}

func TestNormalizerKeepsWhatIsThere(t *testing.T) {
	n := NewNormalizer(testTopics, 1<<20, nil)
	in := `{"id":"given","header":{"sender":{"id":"w","type":"BOT","senderName":"W"},"timestamp":"2026-01-02T03:04:05Z","customer":{"_id":"x"},"channelData":{"serviceIdentifier":"s","channelCustomerIdentifier":"c"}},"body":{"type":"PLAIN","markdownText":"hi"}}`
	out := only(t, n.Process(rec(1, "", in)))
	want := strings.Replace(in, `"2026-01-02T03:04:05Z"`, "1767323045000", 1)
	if string(out.Value) != want {
		t.Fatalf("only the timestamp should change:\n got %s\nwant %s", out.Value, want)
	}
}

func TestNormalizerRoutes(t *testing.T) {
	n := NewNormalizer(testTopics, 400, nil)
	receipt := `{"header":{"sender":{"id":"w","type":"CONNECTOR","senderName":"W"},"channelData":{"serviceIdentifier":"s","channelCustomerIdentifier":"c"},"conversationId":"conv"},"body":{"type":"DELIVERYNOTIFICATION","messageId":"m","status":"READ","reasonCode":"200"}}`
	if out := only(t, n.Process(rec(1, "", receipt))); out.Topic != "notes" || string(out.Key) != "conv" {
		t.Errorf("receipt went to %s keyed %q", out.Topic, out.Key)
	}
	reply := `{"header":{"sender":{"id":"b","type":"BOT","senderName":"B"},"conversationId":"conv"},"body":{"type":"PLAIN","markdownText":"x"}}`
	if out := only(t, n.Process(rec(2, "", reply))); out.Topic != "rep" || string(out.Key) != conversationKeyPrefix+"conv" {
		t.Errorf("reply went to %s keyed %q", out.Topic, out.Key)
	}
	for name, value := range map[string]string{
		"garbage": "\x00\xff", "invalid": `{"header":{},"body":{}}`, "too large": `{"a":"` + strings.Repeat("x", 500) + `"}`,
	} {
		res := n.Process(rec(3, "k", value))
		if len(res.Reject) == 0 || len(res.Reject.Codes()) == 0 || len(res.Outputs) != 0 {
			t.Errorf("%s: want a rejection with codes and no output, got %+v", name, res)
		}
	}
}

func TestEnricherSessionsAndChangelog(t *testing.T) {
	n := NewNormalizer(testTopics, 1<<20, nil)
	e := NewEnricher(testTopics, "sessions", 4, session.Fixed(30*time.Minute), nil, fixedClock(time.UnixMilli(1732400000000)))
	in := only(t, n.Process(rec(1, "", `{"header":{"sender":{"id":"w","type":"CONNECTOR","senderName":"W"},"channelData":{"serviceIdentifier":"s","channelCustomerIdentifier":"c"}},"body":{"type":"PLAIN","markdownText":"hi"}}`)))
	r := stream.Record{Topic: "rep", Partition: 4, Offset: 100, Key: in.Key, Value: in.Value, Headers: in.Headers, Time: in.Time}
	outs := e.Process(r).Outputs
	if len(outs) != 2 || outs[0].Topic != "ccm" || outs[1].Topic != "sessions" || outs[1].Partition != 4 {
		t.Fatalf("want a CCM record and a changelog record on partition 4: %+v", outs)
	}
	var m struct {
		Header struct{ ChannelSessionID, ConversationID string }
	}
	if err := json.Unmarshal(outs[0].Value, &m); err != nil || m.Header.ConversationID == "" || string(outs[0].Key) != m.Header.ConversationID {
		t.Fatalf("output not enriched or not keyed by conversation: %s", outs[0].Value)
	}
	// A new owner restores from the changelog and answers a replayed record identically.
	owner := NewEnricher(testTopics, "sessions", 4, session.Fixed(30*time.Minute), nil, fixedClock(time.UnixMilli(1732400000000)))
	if err := owner.Restore(outs[1].Key, outs[1].Value); err != nil {
		t.Fatal(err)
	}
	if replay := owner.Process(r).Outputs; !bytes.Equal(replay[0].Value, outs[0].Value) {
		t.Fatal("replay after restore must be byte-identical")
	}
	if ended := e.Expire(time.UnixMilli(1732400000000).Add(31 * time.Minute)); len(ended) != 1 || ended[0].Value == nil {
		t.Fatalf("an idle session must end with a state record: %+v", ended)
	}
	if tomb := e.Expire(time.UnixMilli(1732400000000).Add(2 * time.Hour)); len(tomb) != 1 || tomb[0].Value != nil {
		t.Fatalf("an ended session must be forgotten with one tombstone: %+v", tomb)
	}
}

// A connector record carrying cimstream's source headers (copied from a CCM record, say) gets them
// replaced by its own: the sessions stage recognises replays by them, and foreign ones would make a new
// record look applied before.
func TestForeignSourceHeadersAreReplaced(t *testing.T) {
	n := NewNormalizer(testTopics, 1<<20, nil)
	r := rec(7, "k", `{"header":{"sender":{"id":"w","type":"CONNECTOR","senderName":"W"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"c"}},"body":{"type":"PLAIN","markdownText":"hi"}}`)
	r.Headers = append(r.Headers, stream.Header{Key: stream.HeaderSourceTopic, Value: []byte("other")},
		stream.Header{Key: stream.HeaderSourceOffset, Value: []byte("999")}, stream.Header{Key: stream.HeaderSourceTimestamp, Value: []byte("1")})
	out := n.Process(r).Outputs[0]
	got := stream.Record{Headers: out.Headers}
	topic, _ := got.Header(stream.HeaderSourceTopic)
	offset, _ := got.Header(stream.HeaderSourceOffset)
	ts, _ := got.Header(stream.HeaderSourceTimestamp)
	if string(topic) != r.Topic || string(offset) != "7" || string(ts) != "1732400000000" {
		t.Fatalf("source headers %q %q %q, want the record's own", topic, offset, ts)
	}
	for _, h := range out.Headers {
		if h.Key == stream.HeaderSourceTopic && string(h.Value) == "other" {
			t.Fatal("the connector's source header was kept beside cimstream's")
		}
	}
}
