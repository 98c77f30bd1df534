// Package egress delivers a webhook channel's connector topic over HTTP: it POSTs each message of
// cim.outbound.<channel> to the connector's URL, signed, and records the answer's outcome (a forwarded
// DELIVERYNOTIFICATION, or a FAILED notification and a dead letter) before the input offset is committed.
//
// Per record key (channelCustomerIdentifier) messages go one at a time in topic order; different keys
// proceed in parallel up to a concurrency limit, and a partition's offset is committed only up to the
// highest record below which every outcome is settled (Confluent's Parallel Consumer is the model). The
// broker is reached only through internal/stage's interfaces, the connector only through Poster, so the
// logic here is tested with fakes.
package egress

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// Request headers of every POST (docs/http-egress.md).
const (
	// HeaderTimestamp is the Unix time in seconds when the attempt was signed.
	HeaderTimestamp = "X-Cimstream-Timestamp"
	// HeaderSignature is a comma-separated list of signatures, as Stripe's header: "v1=" (timestamp and
	// body) while connectors move over, and "v2=" (timestamp, delivery, attempt and body).
	HeaderSignature = "X-Cimstream-Signature"
	// HeaderDelivery names the Kafka record (topic/partition/offset): the same on every retry and after a
	// crash, so a connector can drop duplicates by it.
	HeaderDelivery = "X-Cimstream-Delivery"
	// HeaderAttempt counts the attempts of this delivery in this process, from 1.
	HeaderAttempt = "X-Cimstream-Attempt"
)

// Signed is what one attempt's signature covers, each header value as it is sent.
type Signed struct {
	Timestamp string // Unix seconds
	Delivery  string // topic/partition/offset
	Attempt   string // 1, 2, ...
	Body      []byte
}

// signed returns the fields of an attempt of rec's coordinates at timestamp.
func signed(timestamp int64, delivery string, attempt int, body []byte) Signed {
	return Signed{Timestamp: strconv.FormatInt(timestamp, 10), Delivery: delivery, Attempt: strconv.Itoa(attempt), Body: body}
}

// V1 is the hex HMAC-SHA256 of timestamp + "." + body. It leaves the delivery id and the attempt
// unsigned: kept only for connectors that still verify it.
func V1(secret []byte, s Signed) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(s.Timestamp + "."))
	mac.Write(s.Body)
	return hex.EncodeToString(mac.Sum(nil))
}

// V2 is the hex HMAC-SHA256 of timestamp "\n" delivery "\n" attempt "\n" body. A header value cannot
// hold a line feed (HTTP forbids it), so no field can borrow from the next one and the body is the rest:
// the string is unambiguous. It differs from every v1 string at the byte after the timestamp.
func V2(secret []byte, s Signed) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(s.Timestamp + "\n" + s.Delivery + "\n" + s.Attempt + "\n"))
	mac.Write(s.Body)
	return hex.EncodeToString(mac.Sum(nil))
}

// Signature returns the signature header value: "v1=…,v2=…" during the transition (withV1), "v2=…"
// after it.
func Signature(secret []byte, s Signed, withV1 bool) string {
	v2 := "v2=" + V2(secret, s)
	if withV1 {
		return "v1=" + V1(secret, s) + "," + v2
	}
	return v2
}
