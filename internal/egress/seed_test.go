package egress

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/internal/stream/deadletter"
	"github.com/cimstream/cimstream/pkg/cim"
)

// The seed's webhook answers, as printed. The 200 body is the contract's example (section 6) byte for
// byte; the message reference prints the same body with "…" for the two values, which is not JSON.
const (
	seed200     = `{"type":"DELIVERYNOTIFICATION","markdownText":"Optional","messageId":"abc12345","status":"DELIVERED","reasonCode":200}`
	seed200Doc  = `{"type":"DELIVERYNOTIFICATION","markdownText":…,"messageId":…,"status":"DELIVERED","reasonCode":200}`
	seed202Text = "accepted; delivery notification will arrive later as a separate message."
	seed400Text = "error delivering the message."
)

// original is an outbound message as the outbound stage writes it to a connector topic.
const original = `{"id":"m-42","header":{"sender":{"id":"agent-1","type":"AGENT","senderName":"Bob"},` +
	`"channelData":{"serviceIdentifier":"svc","channelCustomerIdentifier":"ann"},"channelSessionId":"s-ann",` +
	`"conversationId":"c-ann","customer":{"_id":"cust-1","firstName":"Ann"}},"body":{"type":"PLAIN","markdownText":"hi"}}`

func originalRecord() stream.Record {
	return stream.Record{Topic: "cim.outbound.web", Partition: 2, Offset: 17, Key: []byte("ann"), Value: []byte(original),
		Time: time.UnixMilli(1_700_000_000_123)}
}

// wrapped is the part of a notification the tests look at.
type wrapped struct {
	ID     string `json:"id"`
	Header struct {
		Sender            cim.Sender      `json:"sender"`
		ChannelData       json.RawMessage `json:"channelData"`
		ChannelSessionID  string          `json:"channelSessionId"`
		ConversationID    string          `json:"conversationId"`
		Customer          json.RawMessage `json:"customer"`
		ProviderMessageID string          `json:"providerMessageId"`
		Timestamp         int64           `json:"timestamp"`
	} `json:"header"`
	Body struct {
		Type         string `json:"type"`
		MessageID    string `json:"messageId"`
		Status       string `json:"status"`
		ReasonCode   int    `json:"reasonCode"`
		MarkdownText string `json:"markdownText"`
	} `json:"body"`
}

func testOutcome(limits cim.Limits) testOutcomes {
	return testOutcomes{NewChannel(Config{Channel: "web", Notifications: "notes", Limits: limits}, nil, nil, nil, zap.NewNop()).out,
		deadletter.Builder{Pipeline: stageName}}
}

// The seed's 200 answer, byte for byte: forwarded as a notification built like cimstream's own, with the
// original's ids, customer and channelData and the connector's status, reasonCode and markdownText.
func TestSeed200BodyAloneIsWrapped(t *testing.T) {
	rec := originalRecord()
	v := Classify(Attempt{Status: http.StatusOK, Body: []byte(seed200)}, cim.Limits{})
	if v.Kind != Forwarded {
		t.Fatalf("the seed's 200 body: %v, want forwarded", v.Kind)
	}
	outs := testOutcome(cim.Limits{}).records(rec, v)
	if len(outs) != 1 || outs[0].Topic != "notes" {
		t.Fatalf("records %v, want one notification", outs)
	}
	out := outs[0]
	var n wrapped
	if err := json.Unmarshal(out.Value, &n); err != nil {
		t.Fatalf("notification is not JSON: %s", out.Value)
	}
	h, b := n.Header, n.Body
	if h.ConversationID != "c-ann" || h.ChannelSessionID != "s-ann" || string(h.Customer) != `{"_id":"cust-1","firstName":"Ann"}` ||
		string(h.ChannelData) != `{"serviceIdentifier":"svc","channelCustomerIdentifier":"ann"}` {
		t.Errorf("header %+v, want the original's ids, customer and channelData", h)
	}
	if h.Sender.ID != "cimstream" || h.Sender.Type != "APP" || h.Timestamp != 1_700_000_000_123 {
		t.Errorf("sender %+v at %d, want cimstream's at the record's time", h.Sender, h.Timestamp)
	}
	if b.Type != "DELIVERYNOTIFICATION" || b.Status != "DELIVERED" || b.ReasonCode != 200 || b.MarkdownText != "Optional" {
		t.Errorf("body %+v, want the connector's DELIVERED/200 \"Optional\"", b)
	}
	if b.MessageID != "m-42" || h.ProviderMessageID != "abc12345" {
		t.Errorf("messageId %q, providerMessageId %q: want the original's id and the connector's", b.MessageID, h.ProviderMessageID)
	}
	if want := wrappedID("cim.outbound.web/2/17", "DELIVERED", 200, "Optional", "abc12345"); n.ID != want {
		t.Errorf("id %q, want %q (derived from the delivery)", n.ID, want)
	}
	if string(out.Key) != "c-ann" || !out.Time.Equal(rec.Time) {
		t.Errorf("key %q time %v, want the conversationId and the record's time", out.Key, out.Time)
	}
	m, err := cim.Decode(out.Value)
	if err != nil {
		t.Fatal(err)
	}
	if vs := cim.Validate(m, cim.Outbound); len(vs) != 0 {
		t.Errorf("the wrapped notification is not a valid CIM message: %v", vs)
	}
	// A redelivery of the same record after a crash, answered the same: the same bytes.
	again := testOutcome(cim.Limits{}).records(rec, Classify(Attempt{Status: http.StatusOK, Body: []byte(seed200)}, cim.Limits{}))
	if !bytes.Equal(again[0].Value, out.Value) || !bytes.Equal(again[0].Key, out.Key) {
		t.Errorf("a redelivery wrote\n%s\nafter\n%s", again[0].Value, out.Value)
	}
	// Another delivery (the message replayed to the topic) is another notification.
	other := rec
	other.Offset++
	if o := testOutcome(cim.Limits{}).records(other, v); bytes.Equal(o[0].Value, out.Value) {
		t.Error("a new delivery of the message must get its own notification id")
	}
}

// The seed's answers as printed: the 200 body, the reference's 200 with "…" (not JSON), 202 and 400 with
// the seed's sentences (and empty, and with the notification body: the status decides, not the body).
func TestSeedAnswersAsPrinted(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		kind   Kind
		reason int
	}{
		{"200 seed body", 200, seed200, Forwarded, 0},
		{"200 seed body with a trailing newline", 200, seed200 + "\n", Forwarded, 0},
		{"200 as printed in the reference (not JSON)", 200, seed200Doc, Accepted, 0},
		{"202 empty", 202, "", Accepted, 0},
		{"202 seed text", 202, seed202Text, Accepted, 0},
		{"202 with the seed body", 202, seed200, Accepted, 0},
		{"400 empty", 400, "", Rejected, 400},
		{"400 seed text", 400, seed400Text, Rejected, 400},
		{"400 with the seed body", 400, seed200, Rejected, 400},
	} {
		v := Classify(Attempt{Status: tc.status, Body: []byte(tc.body)}, cim.Limits{})
		if v.Kind != tc.kind || v.Reason != tc.reason {
			t.Errorf("%s: %v/%d, want %v/%d", tc.name, v.Kind, v.Reason, tc.kind, tc.reason)
		}
	}
	// 400 as the contract says: FAILED/400 and a dead letter, whatever the body.
	outs := testOutcome(cim.Limits{}).records(originalRecord(), Classify(Attempt{Status: 400, Body: []byte(seed400Text)}, cim.Limits{}))
	var n wrapped
	if len(outs) != 2 || json.Unmarshal(outs[0].Value, &n) != nil || n.Body.Status != "FAILED" || n.Body.ReasonCode != 400 {
		t.Errorf("400: %v, want FAILED/400 and a dead letter", outs)
	}
}

// A body alone is forwarded only when the contract's body rules accept it; otherwise the 200 is accepted
// with nothing forwarded, as any other 200 body is.
func TestBodyAloneRules(t *testing.T) {
	set := func(old, new string) string { return strings.Replace(seed200, old, new, 1) }
	for _, tc := range []struct {
		name   string
		body   string
		limits cim.Limits
		kind   Kind
		reason int // of the wrapped notification, when forwarded
	}{
		{"status LOST", set(`"DELIVERED"`, `"LOST"`), cim.Limits{}, Accepted, 0},
		{"status lower case", set(`"DELIVERED"`, `"delivered"`), cim.Limits{}, Accepted, 0},
		{"missing messageId", set(`"messageId":"abc12345",`, ``), cim.Limits{}, Accepted, 0},
		{"blank messageId", set(`"abc12345"`, `"  "`), cim.Limits{}, Accepted, 0},
		{"2 KiB messageId", set(`"abc12345"`, `"`+strings.Repeat("m", 2048)+`"`), cim.Limits{}, Accepted, 0},
		{"100-byte messageId under a 64-byte bound", set(`"abc12345"`, `"`+strings.Repeat("m", 100)+`"`), cim.Limits{MaxIDBytes: 64}, Accepted, 0},
		{"1500-byte messageId under a 2048-byte bound", set(`"abc12345"`, `"`+strings.Repeat("m", 1500)+`"`), cim.Limits{MaxIDBytes: 2048}, Forwarded, 200},
		{"missing reasonCode", set(`,"reasonCode":200`, ``), cim.Limits{}, Accepted, 0},
		{"reasonCode a digit string", set(`200}`, `"404"}`), cim.Limits{}, Forwarded, 404},
		{"reasonCode 200.0", set(`200}`, `200.0}`), cim.Limits{}, Forwarded, 200},
		{"reasonCode a word", set(`200}`, `"OK"}`), cim.Limits{}, Accepted, 0},
		{"reasonCode a fraction", set(`200}`, `2.5}`), cim.Limits{}, Accepted, 0},
		{"reasonCode negative", set(`200}`, `-1}`), cim.Limits{}, Accepted, 0},
		{"markdownText a number", set(`"Optional"`, `7`), cim.Limits{}, Accepted, 0},
		{"without markdownText", set(`"markdownText":"Optional",`, ``), cim.Limits{}, Forwarded, 200},
		{"READ", set(`"DELIVERED"`, `"READ"`), cim.Limits{}, Forwarded, 200},
		{"FAILED/500", set(`"DELIVERED","reasonCode":200`, `"FAILED","reasonCode":500`), cim.Limits{}, Forwarded, 500},
		{"another body type", set(`"DELIVERYNOTIFICATION"`, `"PLAIN"`), cim.Limits{}, Accepted, 0},
		{"an array", `[` + seed200 + `]`, cim.Limits{}, Accepted, 0},
		{"two objects", seed200 + seed200, cim.Limits{}, Accepted, 0},
		{"an object with the body and trailing keys", seed200[:len(seed200)-1] + `},"header":{}}`, cim.Limits{}, Accepted, 0},
		{"over the answer bound", set(`"Optional"`, `"`+strings.Repeat("x", maxAnswer)+`"`), cim.Limits{}, Accepted, 0},
		{"over the message size limit", set(`"Optional"`, `"`+strings.Repeat("x", 2048)+`"`), cim.Limits{MaxBytes: 1024}, Accepted, 0},
		{"too deep", set(`"Optional"`, `"x","extra":`+strings.Repeat("[", 70)+strings.Repeat("]", 70)), cim.Limits{}, Accepted, 0},
	} {
		v := Classify(Attempt{Status: http.StatusOK, Body: []byte(tc.body)}, tc.limits)
		if v.Kind != tc.kind {
			t.Errorf("%s: %v, want %v", tc.name, v.Kind, tc.kind)
			continue
		}
		if tc.kind != Forwarded {
			continue
		}
		outs := testOutcome(tc.limits).records(originalRecord(), v)
		var n wrapped
		if len(outs) != 1 || json.Unmarshal(outs[0].Value, &n) != nil || n.Body.ReasonCode != tc.reason || n.Header.ConversationID != "c-ann" {
			t.Errorf("%s: %v, want one notification with reasonCode %d", tc.name, outs, tc.reason)
		}
	}
}

// A whole CIM message is still forwarded unchanged; the wrapped form leaves it alone.
func TestWholeMessageStillForwardedAsItCame(t *testing.T) {
	v := Classify(Attempt{Status: http.StatusOK, Body: []byte(note)}, cim.Limits{})
	outs := testOutcome(cim.Limits{}).records(originalRecord(), v)
	if v.Kind != Forwarded || len(outs) != 1 || string(outs[0].Value) != note {
		t.Fatalf("a whole notification message: %v %v, want it forwarded as it came", v.Kind, outs)
	}
}

// A wrapped notification over the configured message size (the original's customer and channelData with
// the connector's text) is not written: a dead letter carries it, as one the topic refuses.
func TestWrappedNotificationOverTheSizeLimit(t *testing.T) {
	limits := cim.Limits{MaxBytes: 2048}
	rec := originalRecord()
	rec.Value = []byte(strings.Replace(original, `"firstName":"Ann"`, `"firstName":"`+strings.Repeat("A", 1200)+`"`, 1))
	body := strings.Replace(seed200, `"Optional"`, `"`+strings.Repeat("x", 1200)+`"`, 1)
	v := Classify(Attempt{Status: http.StatusOK, Body: []byte(body)}, limits)
	if v.Kind != Forwarded {
		t.Fatalf("the body alone is within the limit: %v, want forwarded", v.Kind)
	}
	outs := testOutcome(limits).records(rec, v)
	if len(outs) != 1 || outs[0].Topic == "notes" {
		t.Fatalf("records %v, want one dead letter", outs)
	}
	if !strings.Contains(string(outs[0].Value), `"providerMessageId":"abc12345"`) || !strings.Contains(string(outs[0].Value), `"c-ann"`) {
		t.Errorf("the dead letter carries %.200s…, want the wrapped notification", outs[0].Value)
	}
	if got := string(headerOf(outs[0], "cimstream.error.codes")); got != CodeNotificationRefused {
		t.Errorf("dead letter codes %q, want %s", got, CodeNotificationRefused)
	}
}

func headerOf(o stream.Output, key string) []byte {
	for _, h := range o.Headers {
		if h.Key == key {
			return h.Value
		}
	}
	return nil
}

// The refused-notification path takes the wrapped form too: refused for good by the notifications topic,
// a dead letter carries the wrapped notification instead of dropping it.
func TestWrappedNotificationRefused(t *testing.T) {
	b := newBroker(1)
	b.Fail = failing("notes", errRefusedForGood)
	produce(t, b, message(0, "ann", original))
	deliverOnce(t, b, seed200)
	written := append(b.Records("notes"), b.Records("dead")...)
	if len(written) != 1 || written[0].Topic != "dead" {
		t.Fatalf("written %s, want one dead letter", topicsOf(written))
	}
	var n wrapped
	if err := json.Unmarshal(written[0].Value, &n); err != nil || n.Body.MessageID != "m-42" || n.Header.ProviderMessageID != "abc12345" {
		t.Errorf("the dead letter carries %s, want the wrapped notification", written[0].Value)
	}
}
