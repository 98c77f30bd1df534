package egress_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/egress"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

// The seed's webhook answers as printed (the same as the package's unit tests): the contract's 200 body
// byte for byte, the reference's 200 with "…" (not JSON), and the sentences it gives for 202 and 400.
const (
	seed200     = `{"type":"DELIVERYNOTIFICATION","markdownText":"Optional","messageId":"abc12345","status":"DELIVERED","reasonCode":200}`
	seed200Doc  = `{"type":"DELIVERYNOTIFICATION","markdownText":…,"messageId":…,"status":"DELIVERED","reasonCode":200}`
	seed202Text = "accepted; delivery notification will arrive later as a separate message."
	seed400Text = "error delivering the message."
)

type seedNote struct {
	ID     string `json:"id"`
	Header struct {
		ConversationID    string          `json:"conversationId"`
		ChannelSessionID  string          `json:"channelSessionId"`
		Customer          json.RawMessage `json:"customer"`
		ProviderMessageID string          `json:"providerMessageId"`
	} `json:"header"`
	Body struct {
		MessageID    string `json:"messageId"`
		Status       string `json:"status"`
		ReasonCode   int    `json:"reasonCode"`
		MarkdownText string `json:"markdownText"`
	} `json:"body"`
}

// TestIntegrationEgressSeedAnswers: a connector answers the seed's bodies exactly as printed. The 200 body
// alone is wrapped into a notification with the original's conversationId, session and customer and the
// connector's status and reasonCode; 202 and the reference's non-JSON 200 write nothing; 400 is FAILED/400
// and a dead letter. A second consumer group over the same records (a second run from the start) writes
// byte-identical notifications.
func TestIntegrationEgressSeedAnswers(t *testing.T) {
	c := newConnector(t, func(r request, _ int) (int, string) {
		switch {
		case strings.HasPrefix(r.ID, "seed"):
			return 200, seed200
		case strings.HasPrefix(r.ID, "doc"):
			return 200, seed200Doc
		case strings.HasPrefix(r.ID, "later"):
			return 202, seed202Text
		case strings.HasPrefix(r.ID, "err"):
			return 400, seed400Text
		}
		return 500, "?"
	})
	cfg := setup(t, c, 3)
	run(t, cfg)
	kafkatest.KcatProduce(t, topic(cfg), true,
		msg("seed-1", "ann", "a"), msg("seed-2", "bob", "b"), msg("later-1", "cyd", "c"), msg("err-1", "dan", "d"), msg("doc-1", "eve", "e"))
	c.waitFor(t, "every message posted", 30*time.Second, func(rs []request) bool { return len(rs) >= 5 })

	first := kafkatest.KcatConsume(t, cfg.Topics.Notifications, kafkatest.AtLeast(3))
	byID := map[string][]kafkatest.KcatRecord{}
	for _, r := range first {
		var n seedNote
		if err := json.Unmarshal([]byte(r.Value), &n); err != nil {
			t.Fatalf("notification is not JSON: %s", r.Value)
		}
		byID[n.Body.MessageID] = append(byID[n.Body.MessageID], r)
	}
	if len(first) != 3 || len(byID["seed-1"]) != 1 || len(byID["seed-2"]) != 1 || len(byID["err-1"]) != 1 {
		t.Fatalf("notifications %v, want one each for seed-1, seed-2 (wrapped) and err-1 (FAILED/400)", byID)
	}
	for id, cust := range map[string]string{"seed-1": "ann", "seed-2": "bob"} {
		r := byID[id][0]
		var n seedNote
		_ = json.Unmarshal([]byte(r.Value), &n)
		if n.Header.ConversationID != "c-"+cust || n.Header.ChannelSessionID != "s-"+cust || string(n.Header.Customer) != `{"_id":"x"}` {
			t.Errorf("%s: header %+v, want the original's conversationId, channelSessionId and customer", id, n.Header)
		}
		if n.Body.Status != "DELIVERED" || n.Body.ReasonCode != 200 || n.Body.MarkdownText != "Optional" || n.Header.ProviderMessageID != "abc12345" {
			t.Errorf("%s: body %+v provider id %q, want the connector's DELIVERED/200 \"Optional\", abc12345", id, n.Body, n.Header.ProviderMessageID)
		}
		if r.Key != "c-"+cust {
			t.Errorf("%s: key %q, want the conversationId", id, r.Key)
		}
	}
	var failed seedNote
	_ = json.Unmarshal([]byte(byID["err-1"][0].Value), &failed)
	if failed.Body.Status != "FAILED" || failed.Body.ReasonCode != 400 {
		t.Errorf("err-1: %s/%d, want FAILED/400", failed.Body.Status, failed.Body.ReasonCode)
	}
	dead := kafkatest.KcatConsume(t, cfg.Topics.DeadLetter, kafkatest.AtLeast(1))
	if len(dead) != 1 || dead[0].Headers["cimstream.error.codes"] != egress.CodeRejected {
		t.Errorf("dead letters %v, want err-1's %s only", dead, egress.CodeRejected)
	}

	// A second run over the same records, from the start: the same notification bytes again.
	again := cfg
	again.Kafka.Consumer.GroupID += ".again"
	run(t, again)
	all := kafkatest.KcatConsume(t, cfg.Topics.Notifications, kafkatest.AtLeast(6))
	if len(all) != 6 {
		t.Fatalf("%d notifications after the second run, want 6", len(all))
	}
	values := map[string]int{}
	for _, r := range all {
		values[r.Key+"\t"+r.Value]++
	}
	for kv, n := range values {
		if n != 2 {
			t.Errorf("written %d times, want twice byte-identical: %s", n, kv)
		}
	}
	c.mu.Lock()
	bad := c.badSig
	c.mu.Unlock()
	if bad != 0 {
		t.Errorf("%d requests failed signature verification", bad)
	}
}
