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
	// HeaderSignature is "v1=" and the hex HMAC-SHA256 of timestamp + "." + body; a comma-separated list
	// leaves room for a second scheme or secret later, as Stripe's header does.
	HeaderSignature = "X-Cimstream-Signature"
	// HeaderDelivery names the Kafka record (topic/partition/offset): the same on every retry and after a
	// crash, so a connector can drop duplicates by it.
	HeaderDelivery = "X-Cimstream-Delivery"
	// HeaderAttempt counts the attempts of this delivery in this process, from 1.
	HeaderAttempt = "X-Cimstream-Attempt"
)

// Sign returns the signature header value of body signed at timestamp (Unix seconds).
func Sign(secret []byte, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(strconv.FormatInt(timestamp, 10)))
	mac.Write([]byte("."))
	mac.Write(body)
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}
