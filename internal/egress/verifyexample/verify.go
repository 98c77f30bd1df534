// Package verifyexample is the signature check shown to connector authors in docs/http-egress.md; a test
// keeps the two identical, and the egress integration tests' connectors verify every request with it.
package verifyexample

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Verify checks a webhook request from cimstream: a v1 signature in X-Cimstream-Signature that is the
// HMAC-SHA256, with the shared secret, of X-Cimstream-Timestamp + "." + body, and a timestamp within
// tolerance of now (so a captured request cannot be replayed later).
func Verify(secret []byte, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
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
