package inbound_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cimstream/cimstream/internal/kafkatest"
	"github.com/cimstream/cimstream/internal/session"
	"github.com/cimstream/cimstream/internal/stream/deadletter"
	"github.com/cimstream/cimstream/pkg/cim"
)

// pad is s lengthened with 'x' to n bytes.
func pad(s string, n int) string { return s + strings.Repeat("x", n-len(s)) }

// padEscaped is s lengthened to n bytes with '<', which the changelog's JSON escapes six-fold.
func padEscaped(s string, n int) string { return s + strings.Repeat("<", n-len(s)) }

// burst is how many START_CHATs with ids JSON escapes six-fold the test sends in one window: their
// decisions (about 6 KiB each) add up past the state cap, short of the 64 a key keeps and of the
// changelog's 1 MiB, so only the cap keeps the changelog records small.
const burst = 56

// idMsg is a message with id, for customer, with extra header fields.
func idMsg(id, customer, text string, extra ...string) string {
	header := `"sender":{"id":"web-1","type":"CONNECTOR","senderName":"WEB"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"` + customer + `"}`
	for _, e := range extra {
		header += "," + e
	}
	return `{"id":"` + id + `","header":{` + header + `},"body":{"type":"PLAIN","markdownText":"` + text + `"}}`
}

// TestIntegrationIdsAtTheLimitSurviveARestart: four START_CHATs of one customer whose ids (message id
// and channelCustomerIdentifier) are at the 1 KiB limit, interleaved with messages one byte over it and
// far over it (300 KiB ids, which once grew the state past what the changelog takes): the over ones are
// dead letters too_long naming the path, the others reach the CCM. Between them a burst of START_CHATs
// whose ids are 1 KiB of '<' (six bytes each once escaped): no changelog record exceeds the state cap.
// After a restart (the table restored from the changelog), the next message carries the conversation
// the table had before.
func TestIntegrationIdsAtTheLimitSurviveARestart(t *testing.T) {
	cfg, f := setup(t, 1, "web")
	topic := kafkatest.InboundTopic(cfg, "web")
	limit := cim.DefaultMaxIDBytes
	customer := pad("cust-", limit)
	startChat := func(i int) string {
		return idMsg(pad(fmt.Sprint("start-", i, "-"), limit), customer, fmt.Sprint("start-", i), `"intent":"START_CHAT"`)
	}
	over := map[string]string{ // text → the path its dead letter must name
		"over-id":       "id",
		"huge-id":       "id",
		"over-customer": "header.channelData.channelCustomerIdentifier",
		"over-conv":     "header.conversationId",
	}
	first := start(t, cfg, f)
	values := []string{
		startChat(1),
		idMsg(pad("over-", limit+1), customer, "over-id", `"intent":"START_CHAT"`),
		startChat(2),
		idMsg(pad("huge-", 300<<10), customer, "huge-id", `"intent":"START_CHAT"`),
		startChat(3),
		idMsg("m-over-customer", pad("cust-", limit+1), "over-customer"),
	}
	for i := range burst {
		values = append(values, idMsg(padEscaped(fmt.Sprint("burst-", i, "-"), limit), customer, fmt.Sprint("burst-", i), `"intent":"START_CHAT"`))
	}
	values = append(values, startChat(4),
		idMsg("m-over-conv", customer, "over-conv", `"conversationId":"`+pad("conv-", limit+1)+`"`))
	produceLarge(t, topic, customer, values...)
	ccm := byText(t, kcatConsumeUnique(t, cfg.Topics.CCMInbound, 4+burst))
	before := ccm["start-4"].header("conversationId")
	if before == "" || before == ccm["start-3"].header("conversationId") {
		t.Fatalf("the fourth START_CHAT must open a conversation of its own: %q", before)
	}
	dlq := kcatConsume(t, cfg.Topics.DeadLetter, len(over))
	for _, d := range dlq {
		text := d.text()
		if text == "" { // the 300 KiB letter is cut to deadLetters.maxValueBytes: find it by its id
			text = "huge-id"
		}
		path, ok := over[text]
		if !ok {
			t.Errorf("unexpected dead letter %.200s", d.Value)
			continue
		}
		if d.Headers[deadletter.HeaderCodes] != cim.CodeTooLong || !strings.HasPrefix(d.Headers[deadletter.HeaderDetail], path+": too_long: ") {
			t.Errorf("%s: dead letter codes %q, detail %.200q; want too_long at %s", text, d.Headers[deadletter.HeaderCodes], d.Headers[deadletter.HeaderDetail], path)
		}
		delete(over, text)
	}
	if len(over) > 0 {
		t.Errorf("no dead letter for %v", over)
	}
	// A batch writes a key's state once (its latest), so the changelog holds one record per batch for
	// this customer, however many messages: read until the state holding the fourth conversation, the
	// last one the messages opened.
	holdsLast := func(rs []kafkatest.KcatRecord) bool {
		for _, r := range rs {
			if strings.Contains(string(r.Value), before) {
				return true
			}
		}
		return false
	}
	largest := 0
	for _, r := range kafkatest.KcatConsume(t, cfg.Topics.Sessions, holdsLast) {
		largest = max(largest, len(r.Value))
	}
	t.Logf("largest changelog record: %d bytes (cap %d)", largest, session.MaxStateBytes)
	if largest > session.MaxStateBytes {
		t.Fatalf("a changelog record of %d bytes, over the state cap of %d", largest, session.MaxStateBytes)
	}

	first.stop(t)
	start(t, cfg, f) // restores the table from the changelog
	produceLarge(t, topic, customer, idMsg(pad("next-", limit), customer, "next"))
	all := kcatConsumeUnique(t, cfg.Topics.CCMInbound, 5+burst)
	ccm = byText(t, all)
	if got := ccm["next"].header("conversationId"); got != before {
		t.Fatalf("after the restart the next message is in conversation %q, the table had %q", got, before)
	}
	if len(ccm) != 5+burst {
		t.Fatalf("the CCM got %d distinct messages, want %d", len(ccm), 5+burst)
	}
	if n := len(kcatConsume(t, cfg.Topics.DeadLetter, 4)); n != 4 {
		t.Fatalf("%d dead letters, want 4", n)
	}
}
