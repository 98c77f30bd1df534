package egress

import (
	"bytes"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/egress/verifyexample"
)

// TestSignatureVerifies: what Sign writes, the connector-side example accepts; a changed body, another
// secret or an old timestamp it refuses.
func TestSignatureVerifies(t *testing.T) {
	secret, body := []byte("s3cret"), []byte(`{"id":"m-1"}`)
	now := time.Unix(1_700_000_000, 0)
	h := http.Header{}
	h.Set(HeaderTimestamp, "1700000000")
	h.Set(HeaderSignature, Sign(secret, now.Unix(), body))
	if err := verifyexample.Verify(secret, h, body, now, 5*time.Minute); err != nil {
		t.Fatalf("valid signature refused: %v", err)
	}
	if verifyexample.Verify(secret, h, []byte(`{"id":"m-2"}`), now, 5*time.Minute) == nil {
		t.Error("a changed body must be refused")
	}
	if verifyexample.Verify([]byte("other"), h, body, now, 5*time.Minute) == nil {
		t.Error("another secret must be refused")
	}
	if verifyexample.Verify(secret, h, body, now.Add(6*time.Minute), 5*time.Minute) == nil {
		t.Error("an old timestamp must be refused")
	}
	// The known answer (from `printf '1.body' | openssl dgst -sha256 -hmac key`) pins the scheme the docs
	// describe: HMAC-SHA256 over "timestamp.body".
	if got := Sign([]byte("key"), 1, []byte("body")); got != "v1=91b5374b153842ad05b2c4eab9349b8321b14703165bd3fb8b034dfb8be98ae5" {
		t.Errorf("signature %q", got)
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
