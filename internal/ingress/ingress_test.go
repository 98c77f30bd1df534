package ingress

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/pkg/cim"
)

// recorder is a Writer that keeps what it was given; block, when set, holds each write until closed.
type recorder struct {
	mu    sync.Mutex
	outs  []stream.Output
	err   error
	block chan struct{}
	began chan struct{}
}

func (r *recorder) Write(ctx context.Context, outs []stream.Output) []error {
	if r.began != nil {
		r.began <- struct{}{}
	}
	if r.block != nil {
		select {
		case <-r.block:
		case <-ctx.Done():
			return []error{ctx.Err()}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return []error{r.err}
	}
	r.outs = append(r.outs, outs...)
	return make([]error, len(outs))
}

func (r *recorder) written() []stream.Output {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]stream.Output(nil), r.outs...)
}

const valid = `{"id":"m-1","header":{"sender":{"id":"web-1","type":"connector","senderName":"WEB"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"ann"}},"body":{"type":"PLAIN","markdownText":"Hello"}}`

func testOptions() Options {
	return Options{Channels: map[string]string{"web": "web"}, MaxBodyBytes: 4096, MaxConcurrent: 8,
		ProduceTimeout: 2 * time.Second, RetryAfter: 2 * time.Second, Seen: NewSeen(time.Minute, 100, 0, nil)}
}

func serve(t *testing.T, opts Options, w Writer) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(NewHandler(opts, w, nil, zap.NewNop()))
	t.Cleanup(srv.Close)
	return srv
}

type reply struct {
	code   int
	header http.Header
	body   []byte
}

func post(t *testing.T, url, contentType, body string, header ...string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, data}
}

func problemOf(t *testing.T, r reply) Problem {
	t.Helper()
	var p Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("body %q is not a problem: %v", r.body, err)
	}
	if p.Status != r.code {
		t.Errorf("problem status %d, answered %d", p.Status, r.code)
	}
	return p
}

func TestValidMessageIsWrittenKeyedByCustomerAndAccepted(t *testing.T) {
	rec := &recorder{}
	srv := serve(t, testOptions(), rec)
	for _, route := range Routes {
		r := post(t, srv.URL+route, "application/json", valid)
		if r.code != http.StatusAccepted || string(r.body) != `{"id":"m-1","status":"ACCEPTED"}` {
			t.Fatalf("%s: %d %s", route, r.code, r.body)
		}
		if r.header.Get("Content-Type") != "application/json" {
			t.Errorf("content type %q", r.header.Get("Content-Type"))
		}
	}
	outs := rec.written()
	if len(outs) != 1 {
		t.Fatalf("the same id on both routes must be written once, got %d records", len(outs))
	}
	o := outs[0]
	if o.Topic != "cim.inbound.web" || string(o.Key) != "ann" || o.Partition != stream.ByKey || string(o.Value) != valid {
		t.Errorf("written %s key %q partition %d value %s", o.Topic, o.Key, o.Partition, o.Value)
	}
}

func TestMissingIDIsAssignedBeforeWriting(t *testing.T) {
	rec := &recorder{}
	opts := testOptions()
	opts.NewID = func() string { return "assigned-1" }
	srv := serve(t, opts, rec)
	noID := strings.Replace(valid, `"id":"m-1",`, "", 1)
	r := post(t, srv.URL+"/cim-messages", "application/json", noID)
	if r.code != http.StatusAccepted || !strings.Contains(string(r.body), `"id":"assigned-1"`) {
		t.Fatalf("%d %s", r.code, r.body)
	}
	m, err := cim.Decode(rec.written()[0].Value)
	if err != nil || m.ID() != "assigned-1" {
		t.Fatalf("written message id %q (%v)", m.ID(), err)
	}
}

func TestInvalidMessageListsEveryViolationAndWritesNothing(t *testing.T) {
	rec := &recorder{}
	srv := serve(t, testOptions(), rec)
	bad := `{"header":{"sender":{"id":"","type":"ROBOT"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"ann"}},"body":{"type":"PLAIN"}}`
	r := post(t, srv.URL+"/cim-messages", "application/json", bad)
	p := problemOf(t, r)
	if r.code != http.StatusBadRequest || p.Error != "invalid_message" {
		t.Fatalf("%d %s", r.code, r.body)
	}
	want := map[string]string{"header.sender.id": "empty", "header.sender.type": "enum", "header.sender.senderName": "required", "body.markdownText": "required"}
	got := map[string]string{}
	for _, v := range p.Violations {
		got[v.Path] = v.Code
		if v.Message == "" {
			t.Errorf("violation %+v has no message", v)
		}
	}
	for path, code := range want {
		if got[path] != code {
			t.Errorf("violation at %s: got %q, want %q (all: %+v)", path, got[path], code, p.Violations)
		}
	}
	if n := len(rec.written()); n != 0 {
		t.Errorf("%d records written for an invalid message", n)
	}
}

func TestBodyBoundaries(t *testing.T) {
	rec := &recorder{}
	opts := testOptions()
	srv := serve(t, opts, rec)
	// A valid message padded with trailing spaces to exactly the limit.
	atLimit := valid + strings.Repeat(" ", opts.MaxBodyBytes-len(valid))
	if r := post(t, srv.URL+"/cim-messages", "application/json", atLimit); r.code != http.StatusAccepted {
		t.Errorf("body of exactly %d bytes: %d %s", len(atLimit), r.code, r.body)
	}
	over := atLimit + " "
	if r := post(t, srv.URL+"/cim-messages", "application/json", over); r.code != http.StatusRequestEntityTooLarge || problemOf(t, r).Error != "too_large" {
		t.Errorf("one byte over: %d %s", r.code, r.body)
	}
	// Without Content-Length (chunked), the limit holds while reading.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/cim-messages", io.MultiReader(strings.NewReader(over)))
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked, one byte over: %d", resp.StatusCode)
	}
	for name, body := range map[string]string{"empty": "", "invalid JSON": `{"id":`, "array": `[1]`, "not UTF-8": "{\"id\":\"\xff\"}"} {
		r := post(t, srv.URL+"/cim-messages", "application/json", body)
		p := problemOf(t, r)
		if r.code != http.StatusBadRequest || len(p.Violations) != 1 || p.Violations[0].Code != cim.CodeMalformed {
			t.Errorf("%s body: %d %s", name, r.code, r.body)
		}
	}
	if n := len(rec.written()); n != 1 {
		t.Errorf("%d records written, want only the one at the limit", n)
	}
}

func TestContentTypes(t *testing.T) {
	srv := serve(t, testOptions(), &recorder{})
	for ct, want := range map[string]int{
		"application/json":                   http.StatusAccepted,
		"application/json; charset=utf-8":    http.StatusAccepted,
		"application/json;charset=UTF-8":     http.StatusAccepted,
		"Application/JSON; charset=\"utf8\"": http.StatusAccepted,
		"application/json; charset=latin1":   http.StatusUnsupportedMediaType,
		"text/plain":                         http.StatusUnsupportedMediaType,
		"application/x-www-form-urlencoded":  http.StatusUnsupportedMediaType,
		"":                                   http.StatusUnsupportedMediaType,
		"application/json; charset":          http.StatusUnsupportedMediaType,
	} {
		r := post(t, srv.URL+"/cim-messages", ct, valid)
		if r.code != want {
			t.Errorf("Content-Type %q: %d, want %d (%s)", ct, r.code, want, r.body)
		}
		if want == http.StatusUnsupportedMediaType && problemOf(t, r).Error != "unsupported_media_type" {
			t.Errorf("Content-Type %q: body %s", ct, r.body)
		}
	}
}

func TestUnknownChannelIs404UnlessADefaultIsConfigured(t *testing.T) {
	rec := &recorder{}
	other := strings.Replace(valid, `"serviceIdentifier":"web"`, `"serviceIdentifier":"+4411"`, 1)
	srv := serve(t, testOptions(), rec)
	r := post(t, srv.URL+"/cim-messages", "application/json", other)
	if r.code != http.StatusNotFound || problemOf(t, r).Error != "channel_not_found" || !strings.Contains(string(r.body), "+4411") {
		t.Fatalf("%d %s", r.code, r.body)
	}
	opts := testOptions()
	opts.DefaultChannel = "sms"
	srv = serve(t, opts, rec)
	if r := post(t, srv.URL+"/cim-messages", "application/json", other); r.code != http.StatusAccepted {
		t.Fatalf("with a default channel: %d %s", r.code, r.body)
	}
	if outs := rec.written(); len(outs) != 1 || outs[0].Topic != "cim.inbound.sms" {
		t.Errorf("written %+v", outs)
	}
}

func TestOtherRoutesAndMethods(t *testing.T) {
	srv := serve(t, testOptions(), &recorder{})
	if r := post(t, srv.URL+"/messages", "application/json", valid); r.code != http.StatusNotFound {
		t.Errorf("other path: %d", r.code)
	}
	resp, err := http.Get(srv.URL + "/cim-messages")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET: %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

func TestBrokerFailureIs503WithRetryAfterAndARetryWrites(t *testing.T) {
	rec := &recorder{err: errors.New("produce to cim.inbound.web/0: connection refused")}
	srv := serve(t, testOptions(), rec)
	r := post(t, srv.URL+"/cim-messages", "application/json", valid)
	if r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "2" || problemOf(t, r).Error != "unavailable" {
		t.Fatalf("%d Retry-After %q %s", r.code, r.header.Get("Retry-After"), r.body)
	}
	rec.mu.Lock()
	rec.err = nil
	rec.mu.Unlock()
	if r := post(t, srv.URL+"/cim-messages", "application/json", valid); r.code != http.StatusAccepted {
		t.Fatalf("a retry after a 503 must be written: %d %s", r.code, r.body)
	}
	if n := len(rec.written()); n != 1 {
		t.Errorf("%d records", n)
	}
}

func TestProduceTimeoutIs503(t *testing.T) {
	rec := &recorder{block: make(chan struct{})} // never acknowledged
	opts := testOptions()
	opts.ProduceTimeout = 200 * time.Millisecond
	srv := serve(t, opts, rec)
	start := time.Now()
	r := post(t, srv.URL+"/cim-messages", "application/json", valid)
	if r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("%d %s", r.code, r.body)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("answered after %v, produceTimeout is 200ms", took)
	}
}

func TestOverTheConcurrencyLimitIs429(t *testing.T) {
	rec := &recorder{block: make(chan struct{}), began: make(chan struct{}, 1)}
	opts := testOptions()
	opts.MaxConcurrent = 1
	srv := serve(t, opts, rec)
	first := make(chan reply, 1)
	go func() { first <- post(t, srv.URL+"/cim-messages", "application/json", valid) }()
	<-rec.began
	second := strings.Replace(valid, `"m-1"`, `"m-2"`, 1)
	r := post(t, srv.URL+"/cim-messages", "application/json", second)
	if r.code != http.StatusTooManyRequests || r.header.Get("Retry-After") != "2" || problemOf(t, r).Error != "too_many_requests" {
		t.Fatalf("%d %s", r.code, r.body)
	}
	close(rec.block)
	if r := <-first; r.code != http.StatusAccepted {
		t.Errorf("the request holding the slot: %d", r.code)
	}
	rec.began = nil
	if r := post(t, srv.URL+"/cim-messages", "application/json", second); r.code != http.StatusAccepted {
		t.Errorf("once the slot is free: %d %s", r.code, r.body)
	}
}

func TestIdempotentRetries(t *testing.T) {
	rec := &recorder{block: make(chan struct{}), began: make(chan struct{}, 4)}
	srv := serve(t, testOptions(), rec)
	// Concurrent retries of one id: the second waits for the first and gets its answer.
	answers := make(chan reply, 2)
	for range 2 {
		go func() { answers <- post(t, srv.URL+"/cim-messages", "application/json", valid) }()
	}
	<-rec.began
	time.Sleep(100 * time.Millisecond) // the second request reaches the handler and waits
	close(rec.block)
	a, b := <-answers, <-answers
	if a.code != http.StatusAccepted || !bytes.Equal(a.body, b.body) || a.code != b.code {
		t.Fatalf("answers differ: %d %s / %d %s", a.code, a.body, b.code, b.body)
	}
	rec.began = nil
	if r := post(t, srv.URL+"/ccm/message/receive", "application/json", valid); r.code != http.StatusAccepted || !bytes.Equal(r.body, a.body) {
		t.Errorf("a later retry: %d %s", r.code, r.body)
	}
	if n := len(rec.written()); n != 1 {
		t.Errorf("%d records for one id", n)
	}
}

// TestResentCopyOfAnAcceptedIDIsTheSameBytesOr409: a byte-identical resend of an accepted message gets the 202
// it got first and writes nothing; any other body under that id (re-serialised, a new header.timestamp,
// another text) is 409 naming the members that differ, and writes nothing: never a 2xx without a record.
func TestResentCopyOfAnAcceptedIDIsTheSameBytesOr409(t *testing.T) {
	rec := &recorder{}
	srv := serve(t, testOptions(), rec)
	first := post(t, srv.URL+"/cim-messages", "application/json", valid)
	if first.code != http.StatusAccepted {
		t.Fatalf("first: %d %s", first.code, first.body)
	}
	if r := post(t, srv.URL+"/cim-messages", "application/json", valid); r.code != http.StatusAccepted || !bytes.Equal(r.body, first.body) {
		t.Errorf("the same bytes: %d %s, want the remembered 202", r.code, r.body)
	}
	for name, c := range map[string]struct{ body, differs string }{
		"a new timestamp": {strings.Replace(valid, `"header":{`, `"header":{"timestamp":"2026-12-02T10:00:00Z",`, 1), "header"},
		"another text":    {strings.Replace(valid, "Hello", "Hello again", 1), "body"},
	} {
		r := post(t, srv.URL+"/cim-messages", "application/json", c.body)
		if p := problemOf(t, r); r.code != http.StatusConflict || len(p.Differs) != 1 || p.Differs[0] != c.differs {
			t.Errorf("%s: %d %s, want 409 naming %s", name, r.code, r.body, c.differs)
		}
	}
	if n := len(rec.written()); n != 1 {
		t.Errorf("%d records for one id", n)
	}
}

// TestNoConflictAnswerForAnIDThatWasNotAccepted: another body under an id whose first request is still in
// flight waits for it; when that fails, nothing says the id was accepted.
func TestNoConflictAnswerForAnIDThatWasNotAccepted(t *testing.T) {
	rec := &recorder{block: make(chan struct{}), began: make(chan struct{}, 2), err: errors.New("broker down")}
	opts := testOptions()
	opts.ProduceTimeout = 300 * time.Millisecond
	srv := serve(t, opts, rec)
	first := make(chan reply, 1)
	go func() { first <- post(t, srv.URL+"/cim-messages", "application/json", valid) }()
	<-rec.began
	r := post(t, srv.URL+"/cim-messages", "application/json", strings.Replace(valid, "Hello", "Bye", 1))
	if a := <-first; a.code != http.StatusServiceUnavailable {
		t.Fatalf("first: %d %s", a.code, a.body)
	}
	if r.code == http.StatusConflict || r.code < 500 || strings.Contains(string(r.body), "accepted") {
		t.Errorf("another body while the first was in flight, which then failed: %d %s", r.code, r.body)
	}
}

// TestConcurrentRetriesShareAFailedAttempt: requests for one id that wait on an attempt share its 503 rather
// than each starting an attempt after the previous one failed (the k-th would answer after k produceTimeouts,
// holding a slot and passing the write deadline); a request arriving after the failure writes again.
func TestConcurrentRetriesShareAFailedAttempt(t *testing.T) {
	rec := &recorder{err: errors.New("broker down"), block: make(chan struct{})}
	opts := testOptions()
	opts.ProduceTimeout = 300 * time.Millisecond
	srv := serve(t, opts, rec)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var worst time.Duration
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			r := post(t, srv.URL+"/cim-messages", "application/json", valid)
			took := time.Since(start)
			if r.code != http.StatusServiceUnavailable {
				t.Errorf("%d %s", r.code, r.body)
			}
			mu.Lock()
			worst = max(worst, took)
			mu.Unlock()
		}()
	}
	wg.Wait()
	// One attempt (two if a request arrived just after the first failed), never six in a row.
	if worst > 2*opts.ProduceTimeout+200*time.Millisecond {
		t.Errorf("the slowest answer took %v, produceTimeout %v", worst, opts.ProduceTimeout)
	}
	close(rec.block)
	rec.mu.Lock()
	rec.err = nil
	rec.mu.Unlock()
	if r := post(t, srv.URL+"/cim-messages", "application/json", valid); r.code != http.StatusAccepted {
		t.Errorf("a request after the failure: %d %s", r.code, r.body)
	}
}

func TestSeenForgetsAfterTheWindowAndBeyondTheLimit(t *testing.T) {
	now := time.Unix(1000, 0)
	s := NewSeen(time.Minute, 2, 0, nil)
	s.now = func() time.Time { return now }
	writes := 0
	ok := func() (answer, bool) { writes++; return answer{code: 202}, true }
	var d bodyDigest
	s.Do(seenKey{id: "a"}, d, ok)
	s.Do(seenKey{id: "a"}, d, ok)
	if writes != 1 {
		t.Fatalf("writes %d within the window", writes)
	}
	now = now.Add(time.Minute)
	s.Do(seenKey{id: "a"}, d, ok)
	if writes != 2 {
		t.Fatalf("after the window the id must be written again (writes %d)", writes)
	}
	s.Do(seenKey{id: "b"}, d, ok)
	s.Do(seenKey{id: "c"}, d, ok) // the limit is 2: a goes
	if s.Len() != 2 {
		t.Errorf("Len %d, limit 2", s.Len())
	}
	s.Do(seenKey{id: "a"}, d, ok)
	if writes != 5 {
		t.Errorf("the oldest id beyond the limit must be forgotten (writes %d)", writes)
	}
}

func TestBearerTokensFromAFileReloadedOnChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte("# connectors\nold-token\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := LoadTokens(path, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tokens.Watch(ctx, 20*time.Millisecond)
	opts := testOptions()
	opts.Tokens = tokens
	opts.Seen = nil
	srv := serve(t, opts, &recorder{})
	for _, h := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", "Basic b2xkLXRva2Vu"}, {"Authorization", "Bearer # connectors"}} {
		r := post(t, srv.URL+"/cim-messages", "application/json", valid, h...)
		if r.code != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") == "" || problemOf(t, r).Error != "unauthorized" {
			t.Errorf("%v: %d %s", h, r.code, r.body)
		}
	}
	if r := post(t, srv.URL+"/cim-messages", "application/json", valid, "Authorization", "Bearer old-token"); r.code != http.StatusAccepted {
		t.Fatalf("valid token: %d %s", r.code, r.body)
	}
	// Rotated while running: the new token works and the old one stops working, without a restart.
	if err := os.WriteFile(path, []byte("new-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for post(t, srv.URL+"/cim-messages", "application/json", valid, "Authorization", "bearer new-token").code != http.StatusAccepted {
		if time.Now().After(deadline) {
			t.Fatal("the new token was not accepted within 5 s of the change")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := post(t, srv.URL+"/cim-messages", "application/json", valid, "Authorization", "Bearer old-token"); r.code != http.StatusUnauthorized {
		t.Errorf("the removed token still works: %d", r.code)
	}
	// An unreadable file keeps the tokens read before.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if r := post(t, srv.URL+"/cim-messages", "application/json", valid, "Authorization", "Bearer new-token"); r.code != http.StatusAccepted {
		t.Errorf("after the file vanished: %d", r.code)
	}
}

// TestTokensFileWithABOMAndAHalfWrittenRewrite: a leading UTF-8 BOM is not part of the first token, and an
// empty file read right after tokens (a rewrite in place caught half-way) keeps them for one more reload.
func TestTokensFileWithABOMAndAHalfWrittenRewrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte("\ufeffs3cret\r\nother\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := LoadTokens(path, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if !tokens.Valid("s3cret") || !tokens.Valid("other") {
		t.Fatal("the tokens of a file starting with a BOM are not all accepted")
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := tokens.reload(); err != nil || !tokens.Valid("s3cret") {
		t.Fatalf("an empty file read once must keep the tokens (%v)", err)
	}
	if err := tokens.reload(); err != nil || tokens.Valid("s3cret") {
		t.Fatalf("an empty file read twice accepts no token (%v)", err)
	}
	// Half-written then complete: the tokens are never dropped in between.
	_ = os.WriteFile(path, []byte("a\n"), 0o600)
	_ = tokens.reload()
	_ = os.WriteFile(path, nil, 0o600)
	_ = tokens.reload()
	_ = os.WriteFile(path, []byte("a\nb\n"), 0o600)
	_ = tokens.reload()
	if !tokens.Valid("a") || !tokens.Valid("b") {
		t.Error("after a rewrite in place: a and b must be accepted")
	}
}

func TestUnreadableTokensFileNamesTheKey(t *testing.T) {
	_, err := LoadTokens(filepath.Join(t.TempDir(), "missing"), zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "ingress.tokensFile") {
		t.Fatalf("error %v", err)
	}
}
