package outbound

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/route"
	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
)

const valid = `{"id":"m-1","header":{"sender":{"id":"agent-1","type":"AGENT","senderName":"Bob"},
"channelData":{"serviceIdentifier":"%s","channelCustomerIdentifier":"cust-9"},"channelSessionId":"s-1","conversationId":"c-1",
"customer":{"_id":"x1","firstName":"Ann"}},"body":{"type":"PLAIN","markdownText":"hello"}}`

func record(offset int64, value string) stream.Record {
	return stream.Record{Topic: "ccm.outbound", Partition: 0, Offset: offset, Value: []byte(value), Time: time.UnixMilli(1732400000000)}
}

func newProcessor(accepted bool) *Processor {
	r := route.New([]config.Route{{Name: "fan", ServiceIdentifier: "fan", Destinations: []string{"a", "b", "c"}}},
		map[string]string{"wa": "whatsapp"})
	return NewProcessor(r, Options{Notifications: "notes", Accepted: accepted, MaxBytes: 1 << 20})
}

type noteBody struct {
	ID     string `json:"id"`
	Header struct {
		Sender           struct{ Type string }
		ConversationID   string          `json:"conversationId"`
		ChannelSessionID string          `json:"channelSessionId"`
		Customer         json.RawMessage `json:"customer"`
	} `json:"header"`
	Body struct {
		Type, MessageID, Status string
		ReasonCode              int
	} `json:"body"`
}

func parse(t *testing.T, o stream.Output) noteBody {
	t.Helper()
	var n noteBody
	if err := json.Unmarshal(o.Value, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// settle reports every message of batch written, except those in failed (index → error).
func settle(p *Processor, batch []stream.Record, failed map[int]error) []stream.Result {
	outcomes := make([]stage.Outcome, len(batch))
	for i, rec := range batch {
		outcomes[i] = stage.Outcome{Record: rec, Err: failed[i]}
	}
	return p.Settle(outcomes)
}

// flat lists the outputs of results in order, a rejection as a stand-in output on topic "dlq".
func flat(results []stream.Result) []stream.Output {
	var outs []stream.Output
	for _, r := range results {
		if len(r.Reject) > 0 {
			outs = append(outs, stream.Output{Topic: "dlq"})
		}
		outs = append(outs, r.Outputs...)
	}
	return outs
}

func TestRoutesAndAccepts(t *testing.T) {
	p := newProcessor(true)
	batch := []stream.Record{record(5, fmt.Sprintf(valid, "wa")), record(6, fmt.Sprintf(valid, "fan"))}
	results := p.Process(batch)
	outs := flat(results)
	if len(results[1].Outputs) != 3 {
		t.Fatalf("the fan-out message's result must hold its 3 writes: %+v", results[1])
	}
	if len(outs) != 4 || outs[0].Topic != "cim.outbound.whatsapp" || string(outs[0].Key) != "cust-9" {
		t.Fatalf("want 1 default-route and 3 fan-out writes keyed by customer: %+v", outs)
	}
	for i, want := range []string{"a", "b", "c"} {
		if outs[i+1].Topic != want || string(outs[i+1].Value) != fmt.Sprintf(valid, "fan") {
			t.Errorf("fan-out %d: %s", i, outs[i+1].Topic)
		}
	}
	notes := flat(settle(p, batch, nil))
	if len(notes) != 2 {
		t.Fatalf("one notification per message, got %d", len(notes))
	}
	n := parse(t, notes[0])
	if n.Body.Status != "ACCEPTED" || n.Body.ReasonCode != 202 || n.Body.MessageID != "m-1" || n.Header.ConversationID != "c-1" ||
		n.Header.ChannelSessionID != "s-1" || string(n.Header.Customer) != `{"_id":"x1","firstName":"Ann"}` || n.Header.Sender.Type != "APP" {
		t.Fatalf("notification: %s", notes[0].Value)
	}
	if string(notes[0].Key) != "c-1" {
		t.Errorf("notification keyed %q, want the conversation", notes[0].Key)
	}
	// Redelivery gives byte-identical notifications.
	p.Process([]stream.Record{record(5, fmt.Sprintf(valid, "wa"))})
	again := flat(settle(p, []stream.Record{record(5, fmt.Sprintf(valid, "wa"))}, nil))
	if string(again[0].Value) != string(notes[0].Value) {
		t.Fatal("a redelivered notification must be byte-identical")
	}
}

func TestFailures(t *testing.T) {
	p := newProcessor(false)
	batch := []stream.Record{
		record(1, `{"header":{},"body":{"type":"PLAIN"}}`), // invalid
		record(2, "garbage"),                     // undecodable
		record(3, fmt.Sprintf(valid, "nowhere")), // no route
		record(4, fmt.Sprintf(valid, "wa")),      // write will fail
		record(5, fmt.Sprintf(valid, "fan")),     // fine, but ACCEPTED is off
	}
	outs := flat(p.Process(batch))
	dead := 0
	for _, o := range outs {
		if o.Topic == "dlq" {
			dead++
		}
	}
	if dead != 3 {
		t.Fatalf("want 3 dead letters from Process, got %d", dead)
	}
	notes := flat(settle(p, batch, map[int]error{3: errors.New("unknown topic")}))
	var got []string
	for _, o := range notes {
		if o.Topic == "dlq" {
			got = append(got, "dlq")
			continue
		}
		n := parse(t, o)
		got = append(got, n.Body.Status+"/"+strconv.Itoa(n.Body.ReasonCode))
		if n.Body.MessageID == "" {
			t.Error("every notification names a message id")
		}
	}
	want := []string{"FAILED/400", "FAILED/400", "FAILED/404", "dlq", "FAILED/500"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

// TestNotificationsAreByteIdenticalOnReplay processes each record twice through fresh processors, as a
// restart after a crash does, and compares the notification bytes, for every status. The second run's
// write error has a different text: it must not reach the notification.
func TestNotificationsAreByteIdenticalOnReplay(t *testing.T) {
	cases := []struct {
		name, value, want string
		failed            bool
		zeroTime          bool
	}{
		{"accepted", fmt.Sprintf(valid, "fan"), "ACCEPTED/202", false, false},
		{"invalid", `{"id":"m-bad","header":{},"body":{"type":"PLAIN"}}`, "FAILED/400", false, false},
		{"undecodable, no id", "garbage", "FAILED/400", false, false},
		{"no route", fmt.Sprintf(valid, "nowhere"), "FAILED/404", false, false},
		{"write failed", fmt.Sprintf(valid, "wa"), "FAILED/500", true, false},
		{"record without a timestamp", fmt.Sprintf(valid, "wa"), "ACCEPTED/202", false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var runs [2][]byte
			for i := range runs {
				rec := record(7, c.value)
				if c.zeroTime {
					rec.Time = time.Time{}
				}
				p := newProcessor(true)
				p.Process([]stream.Record{rec})
				var failed map[int]error
				if c.failed {
					failed = map[int]error{0: fmt.Errorf("attempt %d: unknown topic", i)}
				}
				var notes []stream.Output
				for _, o := range flat(settle(p, []stream.Record{rec}, failed)) {
					if o.Topic == "notes" {
						notes = append(notes, o)
					}
				}
				if len(notes) != 1 {
					t.Fatalf("want one notification, got %d", len(notes))
				}
				n := parse(t, notes[0])
				if got := n.Body.Status + "/" + strconv.Itoa(n.Body.ReasonCode); got != c.want {
					t.Fatalf("status %s, want %s", got, c.want)
				}
				runs[i] = notes[0].Value
			}
			if string(runs[0]) != string(runs[1]) {
				t.Fatalf("replayed notification differs:\n%s\n%s", runs[0], runs[1])
			}
			var ts struct {
				Header struct{ Timestamp int64 } `json:"header"`
			}
			_ = json.Unmarshal(runs[0], &ts)
			if want := map[bool]int64{false: 1732400000000, true: 0}[c.zeroTime]; ts.Header.Timestamp != want {
				t.Errorf("timestamp %d, want %d (the input record's, never negative)", ts.Header.Timestamp, want)
			}
		})
	}
}
