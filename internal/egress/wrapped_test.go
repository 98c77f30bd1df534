package egress

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/outbound"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/pkg/cim"
)

// wrappedOf is the wrapped notification of answer to rec.
func wrappedOf(t *testing.T, rec stream.Record, answer string) (stream.Output, wrapped) {
	t.Helper()
	v := Classify(Attempt{Status: http.StatusOK, Body: []byte(answer)}, cim.Limits{})
	if v.Kind != Forwarded {
		t.Fatalf("%s: %v, want forwarded", answer, v.Kind)
	}
	outs := testOutcome(cim.Limits{}).records(rec, v)
	var n wrapped
	if len(outs) != 1 || outs[0].Topic != "notes" || json.Unmarshal(outs[0].Value, &n) != nil {
		t.Fatalf("%s: records %v, want one notification", answer, outs)
	}
	return outs[0], n
}

// A CIM id may hold a NUL (the validator bounds only its length): the outbound stage's ACCEPTED/202 of a
// message with id "webhook\x00cim.outbound.web/0/5" must not get the id of the notification wrapped from a
// connector's ACCEPTED/202 answer to delivery cim.outbound.web/0/5.
func TestWrappedIDApartFromOutboundIDs(t *testing.T) {
	const crafted = "webhook\x00cim.outbound.web/0/5"
	value, _ := json.Marshal(map[string]any{"id": crafted, "header": map[string]any{"conversationId": "c-x", "channelSessionId": "s-x"},
		"body": map[string]any{"type": "PLAIN", "markdownText": "hi"}})
	ccm := stream.Record{Topic: "cim.outbound", Partition: 0, Offset: 9, Value: value, Time: time.UnixMilli(1_700_000_000_000)}
	msg, err := cim.Decode(value)
	if err != nil || msg.ID() != crafted {
		t.Fatalf("crafted message: %v, id %q", err, msg.ID())
	}
	var own wrapped
	if err := json.Unmarshal(outbound.Notification("notes", ccm, msg, outbound.StatusAccepted, 202, "Accepted").Value, &own); err != nil {
		t.Fatal(err)
	}

	rec := originalRecord()
	rec.Partition, rec.Offset = 0, 5
	answer := strings.Replace(strings.Replace(seed200, `"DELIVERED"`, `"ACCEPTED"`, 1), `200}`, `202}`, 1)
	_, n := wrappedOf(t, rec, answer)
	if n.Body.Status != "ACCEPTED" || n.Body.ReasonCode != 202 {
		t.Fatalf("wrapped %+v, want ACCEPTED/202", n.Body)
	}
	if n.ID == own.ID {
		t.Errorf("the wrapped notification of delivery cim.outbound.web/0/5 has the id %s of the outbound stage's ACCEPTED/202 of message %q", n.ID, crafted)
	}
}

// reasonCode is bounded to int32 (the CCM reads a Java int) in every form: a digit string, an integer, an
// exponent; beyond it the answer is Accepted with nothing forwarded, never wrapped with a saturated code.
func TestBodyAloneReasonCodeBound(t *testing.T) {
	for _, tc := range []struct {
		code   string
		kind   Kind
		reason int
	}{
		{`"99999999999999999999"`, Accepted, 0},
		{`99999999999999999999`, Accepted, 0},
		{`1e19`, Accepted, 0},
		{`1e400`, Accepted, 0},
		{`"2147483648"`, Accepted, 0},
		{`2147483648`, Accepted, 0},
		{`2.147483648e9`, Accepted, 0},
		{`"00000000000000000000002147483648"`, Accepted, 0},
		{`"9223372036854775807"`, Accepted, 0},
		{`9223372036854775807`, Accepted, 0},
		{`"2147483647"`, Forwarded, 2147483647},
		{`2147483647`, Forwarded, 2147483647},
		{`2.147483647e9`, Forwarded, 2147483647},
		{`"00000000000000000000000000200"`, Forwarded, 200},
		{`"0"`, Forwarded, 0},
		{`0`, Forwarded, 0},
		{`131047`, Forwarded, 131047},
	} {
		body := strings.Replace(seed200, `"reasonCode":200`, `"reasonCode":`+tc.code, 1)
		v := Classify(Attempt{Status: http.StatusOK, Body: []byte(body)}, cim.Limits{})
		if v.Kind != tc.kind {
			t.Errorf("reasonCode %s: %v, want %v", tc.code, v.Kind, tc.kind)
			continue
		}
		if tc.kind != Forwarded {
			continue
		}
		var n wrapped
		outs := testOutcome(cim.Limits{}).records(originalRecord(), v)
		if len(outs) != 1 || json.Unmarshal(outs[0].Value, &n) != nil || n.Body.ReasonCode != tc.reason {
			t.Errorf("reasonCode %s: %v, want one notification with reasonCode %d", tc.code, outs, tc.reason)
		}
	}
}

// One id, one set of bytes: answers to the same delivery that differ only in markdownText or messageId
// (providerMessageId) write different bytes, so they get different ids; the same answer gets the same
// id and bytes. A NUL in the text or the id cannot move a part of the name into the next one.
func TestWrappedIDCoversEverythingWritten(t *testing.T) {
	with := func(text, id string) string {
		b, _ := json.Marshal(map[string]any{"type": "DELIVERYNOTIFICATION", "markdownText": text, "messageId": id,
			"status": "DELIVERED", "reasonCode": 200})
		return string(b)
	}
	answers := []string{
		seed200,
		with("Optional", "abc12345"), // the seed's answer in another key order: the same notification
		with("Delivered at 12:00", "abc12345"),
		with("Optional", "wamid.HBgL"),
		with("a\x00b", "c"),
		with("a", "b\x00c"),
		with("Optional", "m-42"), // the original's id echoed: no providerMessageId
		strings.Replace(seed200, `"markdownText":"Optional",`, ``, 1),
	}
	rec := originalRecord()
	ids := map[string][]byte{}
	for _, a := range answers {
		out, n := wrappedOf(t, rec, a)
		if prev, ok := ids[n.ID]; ok && !bytes.Equal(prev, out.Value) {
			t.Errorf("id %s with two different notifications:\n%s\n%s", n.ID, prev, out.Value)
		}
		ids[n.ID] = out.Value
		again, m := wrappedOf(t, rec, a)
		if m.ID != n.ID || !bytes.Equal(again.Value, out.Value) {
			t.Errorf("%s answered again: %s, want %s byte for byte", a, again.Value, out.Value)
		}
	}
	if len(ids) != len(answers)-1 {
		t.Errorf("%d ids for %d answers of which 2 write the same notification", len(ids), len(answers))
	}
}
