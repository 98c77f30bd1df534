package ingress_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/inbound"
	"github.com/cimstream/cimstream/internal/ingress"
	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/kafkatest"
	"github.com/cimstream/cimstream/internal/service"
)

func TestMain(m *testing.M) { os.Exit(kafkatest.Main(m)) }

// ingressConfig is a test configuration whose channel "web" has a topic of its own, read by the inbound
// pipeline through the same pattern rule as production (cim.inbound.<channel>).
func ingressConfig(t *testing.T, brokers ...string) (config.Config, string) {
	t.Helper()
	cfg := kafkatest.Config(t)
	if len(brokers) > 0 {
		cfg.Kafka.Brokers = brokers
	}
	channel := kafkatest.Name(t, "web")
	cfg.Channels = map[string]string{"web": channel}
	cfg.Topics.InboundPattern = "^" + regexp.QuoteMeta(config.InboundTopic(channel)) + "$"
	cfg.Outbound.Enabled = false
	cfg.Inbound.TopicRefreshInterval = time.Second
	cfg.Kafka.Consumer.CommitInterval = 100 * time.Millisecond
	cfg.Ingress.Address = "127.0.0.1:0"
	cfg.Ingress.ReadTimeout = 5 * time.Second // within kafkatest's shutdown.timeout of 15s
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg, config.InboundTopic(channel)
}

// running is one in-process cimstream: the inbound pipeline and the ingress, as `cimstream run` wires them.
type running struct {
	url    string
	cancel context.CancelFunc
	done   chan error
}

func startService(t *testing.T, cfg config.Config) *running {
	t.Helper()
	log := zaptest.NewLogger(t)
	svc, err := service.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	m := svc.Metrics()
	if cfg.Inbound.Enabled {
		p, err := inbound.NewPipeline(cfg, svc.Kafka(), log, inbound.Observers{Records: m, Sessions: m, Runner: m,
			Stats: svc.Stats(), Budget: svc.Budget(), Restored: m.Restored, Ready: svc.Readiness().Set})
		if err != nil {
			t.Fatal(err)
		}
		svc.Add(p)
	}
	srv, err := ingress.NewServer(cfg, kafkaedge.NewSink(svc.Kafka(), "ingress", svc.Stats()), m, log, svc.Budget())
	if err != nil {
		t.Fatal(err)
	}
	svc.AddFront(srv)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- svc.Run(ctx) }()
	select {
	case addr := <-srv.Addr():
		r.url = "http://" + addr
	case err := <-r.done:
		t.Fatalf("service stopped before the ingress listened: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the ingress did not listen within 60 s")
	}
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("service stopped with %v", err)
		}
	case <-time.After(45 * time.Second):
		t.Error("service did not stop within 45 s")
	}
}

func message(id, customer, text string) string {
	idField := ""
	if id != "" {
		idField = fmt.Sprintf(`"id":%q,`, id)
	}
	return fmt.Sprintf(`{%s"header":{"sender":{"id":"web-1","type":"CONNECTOR","senderName":"WEB"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":%q,"customerFirstName":"Ann"}},"body":{"type":"PLAIN","markdownText":%q}}`,
		idField, customer, text)
}

type reply struct {
	code   int
	header http.Header
	body   string
}

func postJSON(t *testing.T, url, body string, header ...string) (reply, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(data)}, err
}

func mustPost(t *testing.T, url, body string, header ...string) reply {
	t.Helper()
	r, err := postJSON(t, url, body, header...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func acceptedID(t *testing.T, r reply) string {
	t.Helper()
	var a ingress.Accepted
	if r.code != http.StatusAccepted || json.Unmarshal([]byte(r.body), &a) != nil || a.Status != "ACCEPTED" || a.ID == "" {
		t.Fatalf("want 202 with an id and status ACCEPTED, got %d %s", r.code, r.body)
	}
	return a.ID
}

// TestIntegrationIngressToCCMEnrichedWithCurl: a message POSTed with curl is answered 202, reaches the
// channel's inbound topic keyed by customer and comes out on the CCM topic enriched with session ids;
// a message without an id gets one, and the CCM sees that same id.
func TestIntegrationIngressToCCMEnrichedWithCurl(t *testing.T) {
	cfg, topic := ingressConfig(t)
	kafkatest.CreateRequired(t, cfg)
	svc := startService(t, cfg)

	out, err := exec.Command("curl", "-sS", "-w", "\n%{http_code}", "-H", "Content-Type: application/json",
		"--data-binary", message("curl-1", "ann", "Hello from curl"), svc.url+"/cim-messages").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v %s", err, out)
	}
	body, code, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if code != "202" || body != `{"id":"curl-1","status":"ACCEPTED"}` {
		t.Fatalf("curl got %s %s", code, body)
	}
	assigned := acceptedID(t, mustPost(t, svc.url+"/ccm/message/receive", message("", "ann", "second")))

	in := kafkatest.KcatConsume(t, topic, kafkatest.AtLeast(2))
	for _, r := range in {
		if r.Key != "ann" {
			t.Errorf("inbound record keyed %q, want the channelCustomerIdentifier ann", r.Key)
		}
	}
	// Session lifecycle events share the CCM topic: count the messages.
	recs := kafkatest.Messages(kafkatest.KcatConsume(t, cfg.Topics.CCMInbound, kafkatest.AtLeastMessages(2)))
	seen := map[string]bool{}
	for _, r := range recs {
		var m struct {
			ID     string `json:"id"`
			Header struct {
				ChannelSessionID string `json:"channelSessionId"`
				ConversationID   string `json:"conversationId"`
				Customer         struct {
					ID string `json:"id"`
				} `json:"customer"`
			} `json:"header"`
		}
		if err := json.Unmarshal([]byte(r.Value), &m); err != nil {
			t.Fatal(err)
		}
		if m.Header.ChannelSessionID == "" || m.Header.ConversationID == "" || m.Header.Customer.ID == "" {
			t.Errorf("CCM record not enriched: %s", r.Value)
		}
		seen[m.ID] = true
	}
	if !seen["curl-1"] || !seen[assigned] || len(recs) != 2 {
		t.Errorf("CCM ids %v, want curl-1 and the assigned %s, once each", seen, assigned)
	}
}

// TestIntegrationIngressErrorAnswersWriteNothing: each refusal has its status and JSON body, and none of
// them writes a record.
func TestIntegrationIngressErrorAnswersWriteNothing(t *testing.T) {
	cfg, topic := ingressConfig(t)
	cfg.Inbound.Enabled = false
	tokens := t.TempDir() + "/tokens"
	if err := os.WriteFile(tokens, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Ingress.TokensFile = tokens
	cfg.Ingress.MaxBodyBytes = 2048
	kafkatest.CreateRequired(t, cfg)
	svc := startService(t, cfg)
	auth := []string{"Authorization", "Bearer s3cret"}
	url := svc.url + "/cim-messages"
	check := func(name string, r reply, code int, kind string) {
		t.Helper()
		var p ingress.Problem
		if err := json.Unmarshal([]byte(r.body), &p); err != nil || r.code != code || p.Status != code || p.Error != kind {
			t.Errorf("%s: %d %s, want %d %s", name, r.code, r.body, code, kind)
		}
	}
	check("no token", mustPost(t, url, message("e-1", "ann", "x")), 401, "unauthorized")
	r := mustPost(t, url, `{"header":{"sender":{"type":"AGENT"}},"body":{"type":"NOPE"}}`, auth...)
	check("invalid", r, 400, "invalid_message")
	for _, want := range []string{`"path":"header.sender.id","code":"required"`, `"path":"body.type","code":"unsupported"`, `"path":"header.channelData","code":"required"`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("400 body lacks %s: %s", want, r.body)
		}
	}
	check("too large", mustPost(t, url, message("e-2", "ann", strings.Repeat("x", 2048)), auth...), 413, "too_large")
	check("unknown channel", mustPost(t, url, strings.Replace(message("e-3", "ann", "x"), `"serviceIdentifier":"web"`, `"serviceIdentifier":"fax"`, 1), auth...), 404, "channel_not_found")
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(message("e-4", "ann", "x")))
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	check("text/plain", reply{resp.StatusCode, resp.Header, string(data)}, 415, "unsupported_media_type")
	// One valid message after the refusals: it alone is on the topic.
	acceptedID(t, mustPost(t, url, message("ok-1", "ann", "fine"), auth...))
	kafkatest.KcatConsume(t, topic, kafkatest.AtLeast(1))
	time.Sleep(time.Second) // a refused request written late would show now
	recs := kafkatest.KcatConsume(t, topic, kafkatest.AtLeast(1))
	if len(recs) != 1 || !strings.Contains(recs[0].Value, `"ok-1"`) {
		t.Errorf("the topic holds %d records, want only ok-1: %+v", len(recs), recs)
	}
}

// TestIntegrationIngressRetriesOfOneIDWriteOneRecord: sequential and concurrent retries of an id get the
// same answer; counted from outside with kcat, the topic holds one record.
func TestIntegrationIngressRetriesOfOneIDWriteOneRecord(t *testing.T) {
	cfg, topic := ingressConfig(t)
	cfg.Inbound.Enabled = false
	kafkatest.CreateRequired(t, cfg)
	svc := startService(t, cfg)
	body := message("retry-1", "bob", "once")
	first := mustPost(t, svc.url+"/cim-messages", body)
	acceptedID(t, first)
	answers := make(chan reply, 10)
	for range 10 {
		go func() {
			r, _ := postJSON(t, svc.url+"/cim-messages", body)
			answers <- r
		}()
	}
	for range 10 {
		if r := <-answers; r.code != first.code || r.body != first.body {
			t.Errorf("retry answered %d %s, first %d %s", r.code, r.body, first.code, first.body)
		}
	}
	acceptedID(t, mustPost(t, svc.url+"/cim-messages", message("other-1", "bob", "other")))
	kafkatest.KcatConsume(t, topic, kafkatest.AtLeast(2))
	time.Sleep(time.Second) // a late duplicate would show now
	recs := kafkatest.KcatConsume(t, topic, kafkatest.AtLeast(2))
	n := 0
	for _, r := range recs {
		if strings.Contains(r.Value, `"retry-1"`) {
			n++
		}
	}
	if n != 1 || len(recs) != 2 {
		t.Errorf("retry-1 is on the topic %d times (%d records), want once", n, len(recs))
	}
}

// TestIntegrationIngressBrokerStoppedIs503NeverA2xx: with the broker stopped, requests are answered 503
// with Retry-After within the produce timeout, never 2xx; once it is back, requests are accepted, and
// every id ever answered 202 is on the topic.
func TestIntegrationIngressBrokerStoppedIs503NeverA2xx(t *testing.T) {
	kafkatest.Brokers(t) // skip or fail as every integration test does
	broker := kafkatest.StartBroker(t, kafkatest.BrokerOptions{})
	cfg, topic := ingressConfig(t, broker.Addr)
	cfg.Inbound.Enabled = false
	cfg.Ingress.ProduceTimeout = 2 * time.Second
	cfg.Kafka.Producer.WriteTimeout = 2 * time.Second
	kafkatest.CreateRequired(t, cfg)
	svc := startService(t, cfg)
	accepted := map[string]bool{}
	send := func(id string) reply {
		start := time.Now()
		r := mustPost(t, svc.url+"/cim-messages", message(id, "c-"+id, id))
		if took := time.Since(start); took > cfg.Ingress.ProduceTimeout+3*time.Second {
			t.Errorf("%s answered after %v", id, took)
		}
		if r.code == http.StatusAccepted {
			accepted[id] = true
		}
		return r
	}
	acceptedID(t, send("before"))
	broker.Stop(t)
	for i := range 5 {
		r := send(fmt.Sprintf("down-%d", i))
		if r.code/100 == 2 {
			t.Fatalf("a 2xx with the broker stopped: %d %s", r.code, r.body)
		}
		if r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
			t.Errorf("broker stopped: %d Retry-After %q %s", r.code, r.header.Get("Retry-After"), r.body)
		}
	}
	broker.Start(t)
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; ; i++ {
		if send(fmt.Sprintf("after-%d", i)).code == http.StatusAccepted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not accepting within 60 s of the broker's restart")
		}
		time.Sleep(500 * time.Millisecond)
	}
	recs := kafkatest.KcatConsumeFrom(t, []string{broker.Addr}, topic, kafkatest.AtLeast(len(accepted)))
	on := map[string]bool{}
	for _, r := range recs {
		var m struct{ ID string }
		_ = json.Unmarshal([]byte(r.Value), &m)
		on[m.ID] = true
	}
	for id := range accepted {
		if !on[id] {
			t.Errorf("%s was answered 202 but is not on the topic", id)
		}
	}
}
