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

// Window is how far X-Cimstream-Timestamp may be from now, either way: a captured request replayed later
// is refused.
const Window = 5 * time.Minute

// Verify checks a webhook request from cimstream: a v2 signature in X-Cimstream-Signature, the
// HMAC-SHA256 with the shared secret of
//
//	X-Cimstream-Timestamp "\n" X-Cimstream-Delivery "\n" X-Cimstream-Attempt "\n" body
//
// and a timestamp within Window of now. A v1 entry is ignored: it does not cover the delivery id, and
// accepting it would let anyone who strips the v2 entry change that id. Only after Verify returns nil
// may the connector trust X-Cimstream-Delivery to drop duplicates.
func Verify(secret []byte, h http.Header, body []byte, now time.Time) error {
	var fields [3]string
	for i, name := range []string{"X-Cimstream-Timestamp", "X-Cimstream-Delivery", "X-Cimstream-Attempt"} {
		// Exactly one value: a second one could be what the connector reads after the first was verified.
		v := h.Values(name)
		if len(v) != 1 || v[0] == "" {
			return errors.New("want exactly one " + name)
		}
		fields[i] = v[0]
	}
	ts, err := strconv.ParseInt(fields[0], 10, 64)
	if err != nil {
		return errors.New("malformed X-Cimstream-Timestamp")
	}
	if age := now.Sub(time.Unix(ts, 0)); age > Window || age < -Window {
		return errors.New("timestamp outside the replay window")
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(fields[0] + "\n" + fields[1] + "\n" + fields[2] + "\n"))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, part := range strings.Split(h.Get("X-Cimstream-Signature"), ",") {
		if sig, ok := strings.CutPrefix(strings.TrimSpace(part), "v2="); ok {
			if got, err := hex.DecodeString(sig); err == nil && hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return errors.New("no valid v2 signature")
}
