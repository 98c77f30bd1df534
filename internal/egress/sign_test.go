package egress

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/egress/verifyexample"
	"github.com/cimstream/cimstream/internal/stream"
)

// captured is one request as the connector received it.
type captured struct {
	h    http.Header
	body []byte
}

// capture POSTs rec's attempt with a real HTTPPoster to a real server and returns what arrived.
func capture(t *testing.T, secret []byte, signV1 bool, at time.Time, rec stream.Record, attempt int) captured {
	t.Helper()
	got := make(chan captured, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- captured{r.Header.Clone(), body}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	p := NewHTTPPoster(srv.URL, secret, 5*time.Second, 1)
	p.SignV1, p.Now = signV1, func() time.Time { return at }
	if a := p.Post(context.Background(), rec, attempt); a.Status != http.StatusAccepted {
		t.Fatalf("POST: %+v", a)
	}
	return <-got
}

// verifyV1Only is the verification example as connectors had it before v2 (v1 only), kept to show they
// keep working during the transition.
func verifyV1Only(secret []byte, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	timestamp := h.Get("X-Cimstream-Timestamp")
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return errors.New("missing or malformed X-Cimstream-Timestamp")
	}
	if age := now.Sub(time.Unix(ts, 0)); age > tolerance || age < -tolerance {
		return errors.New("timestamp outside the tolerance")
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(timestamp + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, part := range strings.Split(h.Get("X-Cimstream-Signature"), ",") {
		if sig, ok := strings.CutPrefix(strings.TrimSpace(part), "v1="); ok {
			if got, err := hex.DecodeString(sig); err == nil && hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return errors.New("no valid v1 signature")
}

var signedRec = stream.Record{Topic: "cim.outbound.web", Partition: 3, Offset: 41, Value: []byte(`{"id":"m-1"}`)}

// TestSignatureVerifies: a request as the egress sends it, the connector-side example accepts; a changed
// body, another secret or a timestamp outside the window either way it refuses.
func TestSignatureVerifies(t *testing.T) {
	secret, now := []byte("s3cret"), time.Unix(1_700_000_000, 0)
	req := capture(t, secret, true, now, signedRec, 1)
	if got := req.h.Get(HeaderSignature); !strings.HasPrefix(got, "v1=") || !strings.Contains(got, ",v2=") {
		t.Fatalf("during the transition the header carries v1 and v2: %q", got)
	}
	if err := verifyexample.Verify(secret, req.h, req.body, now); err != nil {
		t.Fatalf("valid signature refused: %v", err)
	}
	if verifyexample.Verify(secret, req.h, []byte(`{"id":"m-2"}`), now) == nil {
		t.Error("a changed body must be refused")
	}
	if verifyexample.Verify([]byte("other"), req.h, req.body, now) == nil {
		t.Error("another secret must be refused")
	}
	if verifyexample.Verify(secret, req.h, req.body, now.Add(verifyexample.Window-time.Second)) != nil {
		t.Error("a request inside the window must be accepted")
	}
}

// TestSignatureRefusesAReplay: a captured request replayed later, or with its delivery id or attempt
// changed (to get past a connector's duplicate check), or with its v2 entry stripped (down to v1, which
// covers neither), fails the verification example.
func TestSignatureRefusesAReplay(t *testing.T) {
	secret, now := []byte("s3cret"), time.Unix(1_700_000_000, 0)
	req := capture(t, secret, true, now, signedRec, 2)
	if d := req.h.Get(HeaderDelivery); d != "cim.outbound.web/3/41" {
		t.Fatalf("delivery %q", d)
	}
	altered := func(name, value string) http.Header {
		h := req.h.Clone()
		h.Set(name, value)
		return h
	}
	for what, h := range map[string]http.Header{
		"another delivery id":   altered(HeaderDelivery, "cim.outbound.web/3/42"),
		"another attempt":       altered(HeaderAttempt, "3"),
		"v1 only (v2 stripped)": altered(HeaderSignature, strings.Split(req.h.Get(HeaderSignature), ",")[0]),
		"no signature":          altered(HeaderSignature, ""),
	} {
		if verifyexample.Verify(secret, h, req.body, now) == nil {
			t.Errorf("%s: verified", what)
		}
	}
	twice := req.h.Clone()
	twice.Add(HeaderDelivery, "cim.outbound.web/3/42")
	if verifyexample.Verify(secret, twice, req.body, now) == nil {
		t.Error("a second X-Cimstream-Delivery must be refused: the connector might dedupe on it")
	}
	for _, at := range []time.Time{now.Add(verifyexample.Window + time.Second), now.Add(-verifyexample.Window - time.Second)} {
		if verifyexample.Verify(secret, req.h, req.body, at) == nil {
			t.Errorf("verified %v after signing: outside the replay window", at.Sub(now))
		}
	}
}

// TestSignatureTransition: a connector still verifying v1 only accepts what the egress sends during the
// transition; once egress.signatureV1 is off the header carries v2 alone, which the example verifies.
func TestSignatureTransition(t *testing.T) {
	secret, now := []byte("s3cret"), time.Unix(1_700_000_000, 0)
	both := capture(t, secret, true, now, signedRec, 1)
	if err := verifyV1Only(secret, both.h, both.body, now, 5*time.Minute); err != nil {
		t.Fatalf("a v1-only connector refuses a request of the transition: %v", err)
	}
	only := capture(t, secret, false, now, signedRec, 1)
	if got := only.h.Get(HeaderSignature); !strings.HasPrefix(got, "v2=") || strings.Contains(got, "v1=") {
		t.Fatalf("v1 turned off: header %q, want v2 alone", got)
	}
	if err := verifyexample.Verify(secret, only.h, only.body, now); err != nil {
		t.Fatalf("v2 alone refused: %v", err)
	}
}

// TestSignatureKnownAnswers pins the canonical strings the docs give, from openssl:
// printf '1.body' and printf '1\ncim.outbound.web/0/7\n2\nbody' | openssl dgst -sha256 -hmac key.
func TestSignatureKnownAnswers(t *testing.T) {
	s := Signed{Timestamp: "1", Delivery: "cim.outbound.web/0/7", Attempt: "2", Body: []byte("body")}
	if got := V1([]byte("key"), s); got != "91b5374b153842ad05b2c4eab9349b8321b14703165bd3fb8b034dfb8be98ae5" {
		t.Errorf("v1 %q", got)
	}
	if got := V2([]byte("key"), s); got != "1e17542011c8e83c65ddbfeac470acc42c3079528ebe5e70bb210d82b3feb4c9" {
		t.Errorf("v2 %q", got)
	}
	if got := Signature([]byte("key"), s, true); got != "v1="+V1([]byte("key"), s)+",v2="+V2([]byte("key"), s) {
		t.Errorf("header %q", got)
	}
}

// TestDocsVerifyExampleIsTheTestedOne: the Go snippet in docs/http-egress.md is verifyexample/verify.go,
// which the tests above and the integration tests' connectors run.
func TestDocsVerifyExampleIsTheTestedOne(t *testing.T) {
	doc, err := os.ReadFile("../../docs/http-egress.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("verifyexample/verify.go")
	if err != nil {
		t.Fatal(err)
	}
	// The snippet starts at the imports: the package clause and its comment are the test package's own.
	code := src[bytes.Index(src, []byte("import (")):]
	if !bytes.Contains(doc, code) {
		t.Fatal("docs/http-egress.md does not contain verifyexample/verify.go from its imports on; copy it again")
	}
}
