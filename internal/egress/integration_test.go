package egress_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/egress"
	"github.com/cimstream/cimstream/internal/egress/verifyexample"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkaedge/topics"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

func TestMain(m *testing.M) { os.Exit(kafkatest.Main(m)) }

// request is one POST the test connector received.
type request struct {
	ID, Customer, Text string
	Delivery           string // X-Cimstream-Delivery: topic/partition/offset
	Status             int    // what the connector answered
	Run                int64  // the connector's run number when the request arrived
	At                 time.Time
}

// connector is a real HTTP server standing in for a webhook connector. It verifies every request's
// signature with the documented example and answers what answer says (status, body).
type connector struct {
	srv    *httptest.Server
	secret []byte
	answer func(r request, attempt int) (int, string)
	mu     sync.Mutex
	log    []request
	tries  map[string]int
	badSig int
	run    atomic.Int64 // set by a test that restarts cimstream
}

func newConnector(t *testing.T, answer func(r request, attempt int) (int, string)) *connector {
	c := &connector{secret: []byte("test-secret-" + t.Name()), answer: answer, tries: map[string]int{}}
	c.srv = httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *connector) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := verifyexample.Verify(c.secret, r.Header, body, time.Now()); err != nil {
		c.mu.Lock()
		c.badSig++
		c.mu.Unlock()
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var m struct {
		ID     string `json:"id"`
		Header struct {
			ChannelData struct {
				Customer string `json:"channelCustomerIdentifier"`
			} `json:"channelData"`
		} `json:"header"`
		Body struct {
			Text string `json:"markdownText"`
		} `json:"body"`
	}
	_ = json.Unmarshal(body, &m)
	req := request{ID: m.ID, Customer: m.Header.ChannelData.Customer, Text: m.Body.Text, Delivery: r.Header.Get(egress.HeaderDelivery),
		Run: c.run.Load(), At: time.Now()}
	c.mu.Lock()
	c.tries[m.ID]++
	attempt := c.tries[m.ID]
	c.mu.Unlock()
	status, answer := c.answer(req, attempt) // may block (a hanging connector)
	req.Status = status
	c.mu.Lock()
	c.log = append(c.log, req)
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, answer)
}

// requests returns a copy of what was received so far.
func (c *connector) requests() []request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]request(nil), c.log...)
}

// accepted is the ids answered 2xx, in the order they were.
func (c *connector) accepted() []request {
	var out []request
	for _, r := range c.requests() {
		if r.Status >= 200 && r.Status < 300 {
			out = append(out, r)
		}
	}
	return out
}

func (c *connector) waitFor(t *testing.T, what string, timeout time.Duration, cond func([]request) bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(c.requests()); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; connector saw %d requests", what, len(c.requests()))
		}
	}
}

// setup configures one webhook channel to c on the test broker and creates its topics.
func setup(t *testing.T, c *connector, partitions int) config.Config {
	t.Helper()
	cfg := kafkatest.Config(t)
	cfg.Inbound.Enabled, cfg.Outbound.Enabled = false, false
	cfg.Topics.Partitions = partitions
	cfg.Kafka.Consumer.CommitInterval = 100 * time.Millisecond
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, append(append([]byte(nil), c.secret...), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Egress.Webhooks = []config.Webhook{{Channel: kafkatest.Name(t, "ch"), URL: c.srv.URL, SecretFile: secretFile, Secret: c.secret}}
	cfg.Egress.RequestTimeout = 500 * time.Millisecond
	cfg.Egress.Concurrency = 8
	cfg.Egress.Retry = config.EgressRetry{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Deadline: 3 * time.Second}
	kafkatest.CreateRequired(t, cfg)
	return cfg
}

func topic(cfg config.Config) string { return topics.OutboundTopic(cfg.Egress.Webhooks[0].Channel) }

// run starts the egress pipeline in-process and waits until it owns its partitions.
func run(t *testing.T, cfg config.Config) {
	t.Helper()
	f, err := kafkaclient.New(cfg.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var readyErr error = fmt.Errorf("pending")
	p := egress.NewPipeline(cfg, f, zaptest.NewLogger(t), egress.Observers{Ready: func(_ string, err error) {
		mu.Lock()
		readyErr = err
		mu.Unlock()
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("egress did not stop in 30 s")
		}
	})
	for deadline := time.Now().Add(45 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		ok := readyErr == nil
		mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", readyErr)
		}
	}
}

// msg is an outbound CIM message as the outbound stage writes it to a connector topic: "key<TAB>value".
func msg(id, customer, text string) string {
	return customer + "\t" + fmt.Sprintf(`{"id":%q,"header":{"sender":{"id":"agent-1","type":"AGENT","senderName":"Bob"},`+
		`"channelData":{"serviceIdentifier":"svc","channelCustomerIdentifier":%q},"channelSessionId":"s-%s","conversationId":"c-%s",`+
		`"customer":{"_id":"x"}},"body":{"type":"PLAIN","markdownText":%q}}`, id, customer, customer, customer, text)
}

// connectorNote is the DELIVERYNOTIFICATION a connector answers with.
func connectorNote(messageID string) string {
	return fmt.Sprintf(`{"id":"dn-%s","header":{"sender":{"id":"wa","type":"CONNECTOR","senderName":"wa"},`+
		`"channelData":{"serviceIdentifier":"svc","channelCustomerIdentifier":"c"},"conversationId":"c-x"},`+
		`"body":{"type":"DELIVERYNOTIFICATION","messageId":%q,"status":"DELIVERED","reasonCode":200}}`, messageID, messageID)
}

type note struct {
	ID   string `json:"id"`
	Body struct {
		MessageID  string `json:"messageId"`
		Status     string `json:"status"`
		ReasonCode int    `json:"reasonCode"`
	} `json:"body"`
}

func notes(t *testing.T, recs []kafkatest.KcatRecord) map[string]note {
	t.Helper()
	out := map[string]note{}
	for _, r := range recs {
		var n note
		if err := json.Unmarshal([]byte(r.Value), &n); err != nil {
			t.Fatalf("notification is not JSON: %s", r.Value)
		}
		out[n.Body.MessageID] = n
	}
	return out
}

// TestIntegrationEgressOutcomes: one connector, one answer per message: 200 with a notification, 202,
// 400, 500 then 200 with a notification, 429 with Retry-After: 1 then 202, and hanging past the request
// timeout until the deadline.
func TestIntegrationEgressOutcomes(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	c := newConnector(t, func(r request, attempt int) (int, string) {
		switch {
		case strings.HasPrefix(r.ID, "note"):
			return 200, connectorNote(r.ID)
		case strings.HasPrefix(r.ID, "acc"):
			return 202, `{"status":"ACCEPTED"}`
		case strings.HasPrefix(r.ID, "bad"):
			return 400, `{"error":"unknown recipient"}`
		case strings.HasPrefix(r.ID, "flaky") && attempt == 1:
			return 500, "oops"
		case strings.HasPrefix(r.ID, "flaky"):
			return 200, connectorNote(r.ID)
		case strings.HasPrefix(r.ID, "busy") && attempt == 1:
			return 429, "slow down"
		case strings.HasPrefix(r.ID, "busy"):
			return 202, ""
		case strings.HasPrefix(r.ID, "hang"):
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
			return 200, connectorNote(r.ID)
		}
		return 500, "?"
	})
	cfg := setup(t, c, 3)
	run(t, cfg)
	kafkatest.KcatProduce(t, topic(cfg), true,
		msg("note-1", "ann", "a"), msg("acc-1", "bob", "b"), msg("bad-1", "cyd", "c"), msg("flaky-1", "dan", "d"), msg("hang-1", "eve", "e"), msg("busy-1", "fay", "f"))

	got := notes(t, kafkatest.KcatConsume(t, cfg.Topics.Notifications, kafkatest.AtLeast(4)))
	for id, want := range map[string]string{"note-1": "DELIVERED/200", "flaky-1": "DELIVERED/200", "bad-1": "FAILED/400", "hang-1": "FAILED/500"} {
		if n := got[id]; fmt.Sprintf("%s/%d", n.Body.Status, n.Body.ReasonCode) != want {
			t.Errorf("notification for %s: %s/%d, want %s", id, n.Body.Status, n.Body.ReasonCode, want)
		}
	}
	if got["note-1"].ID != "dn-note-1" {
		t.Errorf("the connector's notification must be forwarded as it came, got id %q", got["note-1"].ID)
	}
	if _, ok := got["acc-1"]; ok {
		t.Error("a 202 must not produce a notification (the outbound stage sent ACCEPTED already)")
	}
	dead := kafkatest.KcatConsume(t, cfg.Topics.DeadLetter, kafkatest.AtLeast(2))
	codes := map[string]string{}
	for _, d := range dead {
		var m struct{ ID string }
		_ = json.Unmarshal([]byte(d.Value), &m)
		codes[m.ID] = d.Headers["cimstream.error.codes"]
	}
	if codes["bad-1"] != egress.CodeRejected || codes["hang-1"] != egress.CodeFailed || len(codes) != 2 {
		t.Errorf("dead letters %v, want bad-1 %s and hang-1 %s only", codes, egress.CodeRejected, egress.CodeFailed)
	}
	tries := map[string]int{}
	for _, r := range c.requests() {
		tries[r.ID]++
	}
	if tries["flaky-1"] != 2 || tries["busy-1"] != 2 || tries["bad-1"] != 1 || tries["acc-1"] != 1 || tries["note-1"] != 1 {
		t.Errorf("attempts %v: flaky-1 and busy-1 twice, the others once (hang-1 until the deadline)", tries)
	}
	var busy []time.Time
	for _, r := range c.requests() {
		if r.ID == "busy-1" {
			busy = append(busy, r.At)
		}
	}
	// The backoff alone would be 50-60 ms; the 429's Retry-After asks for a second.
	if len(busy) == 2 && busy[1].Sub(busy[0]) < 900*time.Millisecond {
		t.Errorf("busy-1 retried %v after its 429 with Retry-After: 1", busy[1].Sub(busy[0]))
	}
	c.mu.Lock()
	bad := c.badSig
	c.mu.Unlock()
	if bad != 0 {
		t.Errorf("%d requests failed signature verification", bad)
	}
}

// TestIntegrationEgressOrderAndIsolation: on a single partition, one customer's connector keeps failing
// while the others' messages go through: every other customer's messages are all delivered while the
// failing one is still retrying its first (progress, not a clock), each customer's in topic order; the
// failing customer's second message, produced while its first is retrying, is not sent before the first
// was accepted. Most records are held as offset and key only (a small egress.maxInFlight) and re-read.
func TestIntegrationEgressOrderAndIsolation(t *testing.T) {
	unblock := make(chan struct{})
	c := newConnector(t, func(r request, attempt int) (int, string) {
		if r.Customer == "stuck" {
			select {
			case <-unblock:
				return 202, ""
			default:
				return 503, "busy"
			}
		}
		return 202, ""
	})
	cfg := setup(t, c, 1)
	cfg.Egress.Retry.Deadline = time.Minute
	// Two records per customer held in full (16 / concurrency 8): the rest wait as offset and key and are
	// re-read from the broker when their turn comes.
	cfg.Egress.MaxInFlight = 16
	run(t, cfg)
	const customers, each = 10, 20
	lines := []string{msg("stuck-0", "stuck", "0")}
	for i := 0; i < each; i++ {
		for k := 0; k < customers; k++ {
			cust := fmt.Sprintf("cust-%d", k)
			lines = append(lines, msg(fmt.Sprintf("%s-%d", cust, i), cust, fmt.Sprint(i)))
		}
	}
	kafkatest.KcatProduce(t, topic(cfg), true, lines...)
	c.waitFor(t, "the failing customer to be retried", 20*time.Second, func(rs []request) bool {
		n := 0
		for _, r := range rs {
			if r.ID == "stuck-0" {
				n++
			}
		}
		return n >= 2
	})
	// A message for the customer while its previous one is retrying.
	kafkatest.KcatProduce(t, topic(cfg), true, msg("stuck-1", "stuck", "1"))
	c.waitFor(t, "every other customer's messages, behind a failing customer on the same partition", 30*time.Second,
		func([]request) bool { return len(c.accepted()) == customers*each })
	for _, r := range c.requests() {
		if r.ID == "stuck-1" {
			t.Fatal("stuck-1 was sent while stuck-0 was still failing")
		}
	}
	close(unblock)
	c.waitFor(t, "the failing customer once its connector recovers", 30*time.Second,
		func([]request) bool { return len(c.accepted()) == customers*each+2 })
	next := map[string]int{}
	for _, r := range c.accepted() {
		var seq int
		fmt.Sscan(r.Text, &seq)
		if seq != next[r.Customer] {
			t.Fatalf("customer %s: message %d accepted when %d was due", r.Customer, seq, next[r.Customer])
		}
		next[r.Customer]++
	}
}
