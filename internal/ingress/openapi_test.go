package ingress

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/stage"
)

// TestResponsesMatchTheOpenAPIDocument sends requests that draw every answer the ingress gives and checks
// each real response (status, headers, body) against schemas/ingress.openapi.yaml with libopenapi-validator.
func TestResponsesMatchTheOpenAPIDocument(t *testing.T) {
	spec, err := os.ReadFile("../../schemas/ingress.openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := libopenapi.NewDocument(spec)
	if err != nil {
		t.Fatal(err)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		for _, e := range verrs {
			t.Errorf("document: %s", e.Error())
		}
	}
	// The validator is not vacuous: a 202 without a status, and a 503 without Retry-After, fail it.
	for _, bad := range []struct {
		code   int
		body   string
		header http.Header
	}{
		{202, `{"id":"m-1"}`, http.Header{}},
		{503, `{"status":503,"error":"unavailable","message":"x"}`, http.Header{}},
	} {
		req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:8081/cim-messages", strings.NewReader(valid))
		req.Header.Set("Content-Type", "application/json")
		bad.header.Set("Content-Type", "application/json")
		resp := &http.Response{StatusCode: bad.code, Header: bad.header, Body: io.NopCloser(strings.NewReader(bad.body)), Request: req}
		if ok, _ := v.ValidateHttpResponse(req, resp); ok {
			t.Errorf("a %d with %s passed the validator", bad.code, bad.body)
		}
	}
	tokensFile := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokensFile, []byte("t0k\nweb-only serviceIdentifiers=web\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := LoadTokens(tokensFile, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	opts := testOptions()
	opts.Tokens = tokens
	opts.ProduceTimeout = 100 * time.Millisecond
	rec := &recorder{}
	srv := serve(t, opts, rec)
	one := testOptions()
	one.MaxConcurrent = 1
	held := &recorder{block: make(chan struct{}), began: make(chan struct{}, 1)}
	busy := serve(t, one, held)
	go func() { _, _ = http.Post(busy.URL+"/cim-messages", "application/json", strings.NewReader(valid)) }()
	<-held.began
	defer close(held.block)

	auth := "Bearer t0k"
	cases := []struct {
		name, base, path, ct, auth, body string
		before                           func()
		want                             int
	}{
		{name: "accepted", path: "/cim-messages", want: 202},
		{name: "accepted, older path", path: "/ccm/message/receive", body: strings.Replace(valid, "m-1", "m-9", 1), want: 202},
		{name: "invalid", body: `{"header":{},"body":{"type":"X"}}`, want: 400},
		{name: "malformed", body: `{`, want: 400},
		{name: "no token", auth: "-", want: 401},
		{name: "unknown channel", body: strings.Replace(valid, `"serviceIdentifier":"web"`, `"serviceIdentifier":"fax"`, 1), want: 404},
		{name: "accepted id, other body", body: strings.Replace(valid, "Hello", "Bye", 1), want: 409},
		{name: "outside the token's binding", auth: "Bearer web-only", body: strings.Replace(valid, `"serviceIdentifier":"web"`, `"serviceIdentifier":"fax"`, 1), want: 403},
		{name: "too large", body: valid + strings.Repeat(" ", 5000), want: 413},
		{name: "text/plain", ct: "text/plain", want: 415},
		{name: "busy", base: busy.URL, body: strings.Replace(valid, "m-1", "m-2", 1), want: 429},
		{name: "refused for good", body: strings.Replace(valid, "m-1", "m-3", 1), want: 500,
			before: func() { rec.mu.Lock(); rec.err = stage.ErrRefused; rec.mu.Unlock() }},
		{name: "broker down", body: strings.Replace(valid, "m-1", "m-4", 1), want: 503,
			before: func() { rec.mu.Lock(); rec.err = errors.New("connection refused"); rec.mu.Unlock() }},
	}
	for _, c := range cases {
		if c.before != nil {
			c.before()
		}
		base, path, ct, body, authz := c.base, c.path, c.ct, c.body, c.auth
		if base == "" {
			base = srv.URL
		}
		if path == "" {
			path = "/cim-messages"
		}
		if ct == "" {
			ct = "application/json"
		}
		if body == "" {
			body = valid
		}
		if authz == "" {
			authz = auth
		}
		req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", ct)
		if authz != "-" {
			req.Header.Set("Authorization", authz)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, resp.StatusCode, data, c.want)
			continue
		}
		// The validator reads the bodies again: give it fresh readers and the document's server URL.
		vreq, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:8081"+path, strings.NewReader(body))
		vreq.Header = req.Header.Clone()
		resp.Body = io.NopCloser(bytes.NewReader(data))
		resp.Request = vreq
		if ok, verrs := v.ValidateHttpResponse(vreq, resp); !ok {
			for _, e := range verrs {
				t.Errorf("%s: response %d %s does not match the document: %s %s", c.name, resp.StatusCode, data, e.Message, e.Reason)
				for _, se := range e.SchemaValidationErrors {
					t.Errorf("  %s", se.Reason)
				}
			}
		}
	}
}
