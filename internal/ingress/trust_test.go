package ingress

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/stage"
)

// tokensFile writes content to a fresh tokens file and loads it.
func tokensFile(t testing.TB, content string) (*Tokens, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := LoadTokens(path, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return tokens, path
}

// msgFor is a valid message of id for serviceIdentifier si and text.
func msgFor(id, si, text string) string {
	return fmt.Sprintf(`{"id":%q,"header":{"sender":{"id":"c-1","type":"CONNECTOR","senderName":"C"},"channelData":{"serviceIdentifier":%q,"channelCustomerIdentifier":"ann"}},"body":{"type":"PLAIN","markdownText":%q}}`, id, si, text)
}

func bearerOf(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

// TestTokenBoundToServiceIdentifiersAndChannels: a token writes only within its binding; outside it the
// answer is 403 naming what was refused (and never the token), and nothing is written.
func TestTokenBoundToServiceIdentifiersAndChannels(t *testing.T) {
	tokens, _ := tokensFile(t, "# tenants\nweb-tok serviceIdentifiers=web*\nwa-tok channels=whats*\nany-tok\n")
	opts := testOptions()
	opts.Channels = map[string]string{"web": "web", "web-2": "web", "4144": "whatsapp"}
	opts.DefaultChannel = "web"
	opts.Tokens = tokens
	rec := &recorder{}
	srv := serve(t, opts, rec)
	url := srv.URL + "/cim-messages"
	for _, c := range []struct {
		tok, si string
		code    int
		names   string
	}{
		{"web-tok", "web", 202, ""},
		{"web-tok", "web-2", 202, ""},
		{"web-tok", "4144", 403, `serviceIdentifier "4144"`},
		{"wa-tok", "4144", 202, ""},
		{"wa-tok", "web", 403, `channel that takes serviceIdentifier "web"`},
		{"any-tok", "4144", 202, ""},
		{"any-tok", "web", 202, ""},
	} {
		r := post(t, url, "application/json", msgFor("m-"+c.tok+"-"+c.si, c.si, "hi"), bearerOf(c.tok)...)
		if r.code != c.code {
			t.Errorf("%s writing %s: %d %s, want %d", c.tok, c.si, r.code, r.body, c.code)
			continue
		}
		if c.code == 403 {
			p := problemOf(t, r)
			if p.Error != "forbidden" || !strings.Contains(p.Message, c.names) || !strings.Contains(p.Message, "not bound") || strings.Contains(string(r.body), c.tok) {
				t.Errorf("%s writing %s: 403 body %s must name %s, say it is not bound, never echo the token", c.tok, c.si, r.body, c.names)
			}
		}
	}
	if n := len(rec.written()); n != 5 {
		t.Errorf("%d records, want the 5 within the bindings", n)
	}
	// A reply without channelData goes to the default channel: a channel-bound token may write it when
	// the default channel is within its binding, a serviceIdentifier-bound one never.
	reply := `{"id":"r-1","header":{"sender":{"id":"a-1","type":"AGENT","senderName":"A"},"conversationId":"c-1"},"body":{"type":"PLAIN","markdownText":"x"}}`
	if r := post(t, url, "application/json", reply, bearerOf("web-tok")...); r.code != 403 || !strings.Contains(problemOf(t, r).Message, "serviceIdentifier") {
		t.Errorf("a serviceIdentifier-bound token writing a message without one: %d %s", r.code, r.body)
	}
	if r := post(t, url, "application/json", reply, bearerOf("wa-tok")...); r.code != 403 {
		t.Errorf("wa-tok writing to the default channel web: %d %s", r.code, r.body)
	}
}

// TestIdempotencyScopedPerTokenAndChannel: the same id from two tokens, or for two channels, is two
// messages (both written); a retry from the same token and channel with the same body gets the same answer
// and writes nothing; the same id with another body is 409 saying what differs, and writes nothing.
func TestIdempotencyScopedPerTokenAndChannel(t *testing.T) {
	tokens, _ := tokensFile(t, "tok-a\ntok-b\n")
	opts := testOptions()
	opts.Channels = map[string]string{"web": "web", "4144": "whatsapp"}
	opts.Tokens = tokens
	rec := &recorder{}
	srv := serve(t, opts, rec)
	url := srv.URL + "/cim-messages"
	a := post(t, url, "application/json", msgFor("1", "web", "from a"), bearerOf("tok-a")...)
	b := post(t, url, "application/json", msgFor("1", "web", "from b"), bearerOf("tok-b")...)
	c := post(t, url, "application/json", msgFor("1", "4144", "from a on whatsapp"), bearerOf("tok-a")...)
	for name, r := range map[string]reply{"tok-a web": a, "tok-b web": b, "tok-a whatsapp": c} {
		if r.code != http.StatusAccepted {
			t.Errorf("%s: %d %s, want 202 (ids of other tokens or channels never collide)", name, r.code, r.body)
		}
	}
	if n := len(rec.written()); n != 3 {
		t.Fatalf("%d records, want 3", n)
	}
	again := post(t, url, "application/json", msgFor("1", "web", "from a"), bearerOf("tok-a")...)
	if again.code != a.code || !bytes.Equal(again.body, a.body) {
		t.Errorf("the same id and body again: %d %s, first %d %s", again.code, again.body, a.code, a.body)
	}
	other := post(t, url, "application/json", msgFor("1", "web", "something else"), bearerOf("tok-a")...)
	if other.code != http.StatusConflict {
		t.Fatalf("the same id with another body: %d %s, want 409", other.code, other.body)
	}
	var p struct {
		Problem
		Differs []string `json:"differs"`
	}
	_ = json.Unmarshal(other.body, &p)
	if p.Error != "id_reused" || !strings.Contains(p.Message, "body differs from the first request with this id") || len(p.Differs) != 1 || p.Differs[0] != "body" {
		t.Errorf("409 body %s: want error id_reused, the message, and differs [body]", other.body)
	}
	if n := len(rec.written()); n != 3 {
		t.Errorf("%d records after a retry and a conflict, want still 3", n)
	}
}

// TestSlowUploadsOfOneTokenDoNotStarveAnother: one token holding requests cannot take every slot: another
// token's request is still served, not 429. The quiet request is sent only once every busy one is held by
// the writer or answered 429, so the test cannot pass on a busy token that arrived late.
func TestSlowUploadsOfOneTokenDoNotStarveAnother(t *testing.T) {
	tokens, _ := tokensFile(t, "busy\nquiet\n")
	rec := &recorder{block: make(chan struct{}), began: make(chan struct{}, 16)}
	opts := testOptions()
	opts.MaxConcurrent = 4
	opts.Tokens = tokens
	srv := serve(t, opts, rec)
	url := srv.URL + "/cim-messages"
	busy := make(chan reply, 6)
	for i := range 6 {
		go func() {
			busy <- post(t, url, "application/json", msgFor(fmt.Sprint("b-", i), "web", "x"), bearerOf("busy")...)
		}()
	}
	held, refused := settle(t, rec.began, busy, 6)
	if held == 0 || refused == 0 {
		t.Fatalf("busy: %d held, %d refused: want some of each (4 slots, a share kept for another token)", held, refused)
	}
	quiet := make(chan reply, 1)
	go func() { quiet <- post(t, url, "application/json", msgFor("q-1", "web", "x"), bearerOf("quiet")...) }()
	select {
	case <-rec.began: // past its slot, at the writer
	case r := <-quiet:
		t.Fatalf("the quiet token while the busy one holds %d: %d %s, want it served", held, r.code, r.body)
	case <-time.After(5 * time.Second):
		t.Fatal("the quiet token's request never reached the writer")
	}
	close(rec.block)
	if r := <-quiet; r.code != http.StatusAccepted {
		t.Errorf("the quiet token: %d %s, want 202 while the busy one holds its share", r.code, r.body)
	}
	for range held {
		if r := <-busy; r.code != http.StatusAccepted {
			t.Errorf("busy: %d %s", r.code, r.body)
		}
	}
}

// settle waits until each of n requests is either at the writer (began) or answered 429, and counts both:
// no other answer can come while the writer holds them.
func settle(t *testing.T, began <-chan struct{}, replies chan reply, n int) (held, refused int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for held+refused < n {
		select {
		case <-began:
			held++
		case r := <-replies:
			if r.code != http.StatusTooManyRequests {
				t.Fatalf("a busy request answered %d %s while the writer holds them", r.code, r.body)
			}
			refused++
		case <-deadline:
			t.Fatalf("after 10 s %d requests held and %d refused of %d", held, refused, n)
		}
	}
	return held, refused
}

// TestTooLargeBodyWrittenWholeBeforeReadingGets413: a client that writes its whole 2 MiB body before it
// reads (Python urllib, Java HttpURLConnection) reads the 413, not a connection reset.
func TestTooLargeBodyWrittenWholeBeforeReadingGets413(t *testing.T) {
	srv := httptest.NewServer(NewHandler(testOptions(), &recorder{}, nil, zap.NewNop()))
	t.Cleanup(srv.Close)
	for _, chunked := range []bool{false, true} {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		body := bytes.Repeat([]byte("x"), 2<<20)
		var req bytes.Buffer
		req.WriteString("POST /cim-messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
		if chunked {
			req.WriteString("Transfer-Encoding: chunked\r\n\r\n")
			for off := 0; off < len(body); off += 64 << 10 {
				fmt.Fprintf(&req, "%x\r\n%s\r\n", 64<<10, body[off:off+64<<10])
			}
			req.WriteString("0\r\n\r\n")
		} else {
			fmt.Fprintf(&req, "Content-Length: %d\r\n\r\n", len(body))
			req.Write(body)
		}
		// Written at a link's pace (about 1.3 s for 2 MiB), as over a network: everything before reading.
		_ = c.(*net.TCPConn).SetWriteBuffer(64 << 10)
		for data := req.Bytes(); len(data) > 0; {
			n := min(len(data), 64<<10)
			if _, err := c.Write(data[:n]); err != nil {
				t.Fatalf("chunked=%v: writing the whole request: %v", chunked, err)
			}
			data = data[n:]
			time.Sleep(40 * time.Millisecond)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("chunked=%v: reading the answer after writing everything: %v", chunked, err)
		}
		data, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(data), "too_large") {
			t.Errorf("chunked=%v: %d %s", chunked, resp.StatusCode, data)
		}
		c.Close()
	}
}

// TestEmptyTokensFileKeptOnceAgainAfterReturningToAnEarlierContent: the "kept one more reload" guard holds
// every time, also after the file went back to content read before.
func TestEmptyTokensFileKeptOnceAgainAfterReturningToAnEarlierContent(t *testing.T) {
	tokens, path := tokensFile(t, "a\n")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := tokens.reload(); err != nil {
			t.Fatal(err)
		}
	}
	write("")    // half-way: kept
	write("a\n") // the same content as before, back again
	write("")    // half-way again: must be kept again
	if !tokens.Valid("a") {
		t.Fatal("an empty file read once after the file returned to its earlier content dropped the tokens")
	}
	write("")
	if tokens.Valid("a") {
		t.Error("an empty file read twice in a row must accept no token")
	}
}

// TestHugeHeadersAreRefused431: the listener caps header bytes (ingress.maxHeaderBytes, 16 KiB by default).
func TestHugeHeadersAreRefused431(t *testing.T) {
	srv, err := NewServer(serverConfig(), &recorder{}, nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() { cancel(); <-done }()
	url := "http://" + <-srv.Addr() + "/cim-messages"
	if r := post(t, url, "application/json", valid, "X-Padding", strings.Repeat("p", 64<<10)); r.code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KiB of headers: %d, want 431", r.code)
	}
	if r := post(t, url, "application/json", valid, "X-Padding", strings.Repeat("p", 8<<10)); r.code != http.StatusAccepted {
		t.Errorf("8 KiB of headers: %d %s, want 202", r.code, r.body)
	}
}

// TestIdempotencyMemoryIsBoundedInBytesAndCharged: the ids remembered take at most idempotencyMaxBytes,
// counted with their keys, digests and answers, and the memory budget holds exactly that (bodies in flight
// given back once answered).
func TestIdempotencyMemoryIsBoundedInBytesAndCharged(t *testing.T) {
	budget := stage.NewBudget(64 << 20)
	opts := testOptions()
	opts.Budget = budget
	opts.MaxInFlightBytes = 1 << 20
	opts.Seen = NewSeen(time.Minute, 1000, 4096, budget)
	rec := &recorder{}
	srv := serve(t, opts, rec)
	long := strings.Repeat("i", 900)
	for i := range 20 {
		if r := post(t, srv.URL+"/cim-messages", "application/json", msgFor(fmt.Sprint(long, i), "web", "x")); r.code != http.StatusAccepted {
			t.Fatalf("%d %s", r.code, r.body)
		}
	}
	if b := opts.Seen.Bytes(); b > 4096 || b < 1000 {
		t.Errorf("remembered %d bytes, cap 4096", b)
	}
	if n := opts.Seen.Len(); n >= 20 || n == 0 {
		t.Errorf("%d ids remembered: the byte cap must have forgotten the oldest", n)
	}
	if used := budget.Used(); used != opts.Seen.Bytes() {
		t.Errorf("budget holds %d, the ids remembered %d (bodies must be given back)", used, opts.Seen.Bytes())
	}
	// The oldest was forgotten: it is written again.
	if r := post(t, srv.URL+"/cim-messages", "application/json", msgFor(long+"0", "web", "x")); r.code != http.StatusAccepted || len(rec.written()) != 21 {
		t.Errorf("%d, %d records", r.code, len(rec.written()))
	}
}

// TestBodiesInFlightAreBoundedInBytesPerToken: bodies reserve their length before they are read; a token
// filling its share of maxInFlightBytes is 429 while another token's request still gets through. As above,
// the quiet request is sent only once every busy one is held or refused.
func TestBodiesInFlightAreBoundedInBytesPerToken(t *testing.T) {
	tokens, _ := tokensFile(t, "busy\nquiet\n")
	budget := stage.NewBudget(64 << 20)
	rec := &recorder{block: make(chan struct{}), began: make(chan struct{}, 16)}
	opts := testOptions()
	opts.MaxConcurrent = 100
	opts.Tokens = tokens
	opts.Budget = budget
	opts.MaxInFlightBytes = 3 * 1024
	opts.Seen = NewSeen(time.Minute, 100, 1<<20, budget)
	srv := serve(t, opts, rec)
	url := srv.URL + "/cim-messages"
	pad := strings.Repeat("p", 700)
	busy := make(chan reply, 4)
	for i := range 4 {
		go func() {
			busy <- post(t, url, "application/json", msgFor(fmt.Sprint("b-", i), "web", pad), bearerOf("busy")...)
		}()
	}
	held, refused := settle(t, rec.began, busy, 4)
	if refused == 0 {
		t.Error("the busy token's bodies beyond its share were not refused")
	}
	if used := budget.Used(); used == 0 || used > 3*1024 {
		t.Errorf("budget holds %d bytes of bodies, cap 3072", used)
	}
	quiet := make(chan reply, 1)
	go func() { quiet <- post(t, url, "application/json", msgFor("q", "web", pad), bearerOf("quiet")...) }()
	select {
	case <-rec.began:
	case r := <-quiet:
		t.Fatalf("quiet while busy holds %d bodies: %d %s, want it served", held, r.code, r.body)
	case <-time.After(5 * time.Second):
		t.Fatal("the quiet token's request never reached the writer")
	}
	close(rec.block)
	if r := <-quiet; r.code != http.StatusAccepted {
		t.Errorf("quiet: %d %s", r.code, r.body)
	}
	for range held {
		if r := <-busy; r.code != http.StatusAccepted {
			t.Errorf("busy: %d %s", r.code, r.body)
		}
	}
	if used := budget.Used(); used != opts.Seen.Bytes() {
		t.Errorf("after the answers the budget holds %d, the ids remembered %d", used, opts.Seen.Bytes())
	}
}
