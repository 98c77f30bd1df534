package egress

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/pkg/cim"
)

// Attempt is what one POST came to.
type Attempt struct {
	Status     int // 0 when there was no answer
	Body       []byte
	RetryAfter time.Duration // from a Retry-After header, 0 without one
	Err        error         // no answer: connection error or timeout
}

// Poster sends one message to the connector.
type Poster interface {
	Post(ctx context.Context, rec stream.Record, attempt int) Attempt
}

// maxAnswer bounds the answer body read: a notification is small, and the rest is discarded unread.
const maxAnswer = 64 << 10

// HTTPPoster POSTs to a connector's URL, signed with its secret.
type HTTPPoster struct {
	URL     string
	Secret  []byte
	Timeout time.Duration // bounds one attempt: connect, send, read the answer
	// Transport sends the requests. A RoundTripper, not an http.Client: it never follows a redirect (the
	// signed body would go to another host) and skips the client's per-request header copying.
	Transport http.RoundTripper
	Now       func() time.Time
	// SignV1 adds the v1 signature beside v2, for connectors not yet verifying v2 (egress.signatureV1).
	SignV1 bool
}

// NewHTTPPoster returns a poster whose attempts time out after timeout and that keeps up to conns
// connections to the connector. It signs with v1 and v2 until SignV1 is set to false.
func NewHTTPPoster(url string, secret []byte, timeout time.Duration, conns int) *HTTPPoster {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = conns, conns
	return &HTTPPoster{URL: url, Secret: secret, Timeout: timeout, Transport: tr, Now: time.Now, SignV1: true}
}

// Post implements Poster.
func (p *HTTPPoster) Post(ctx context.Context, rec stream.Record, attempt int) Attempt {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL, bytes.NewReader(rec.Value))
	if err != nil {
		return Attempt{Err: err}
	}
	s := signed(p.Now().Unix(), DeliveryID(rec), attempt, rec.Value)
	req.Header = http.Header{
		"Content-Type":  {"application/json"},
		"User-Agent":    {"cimstream-webhook/1"},
		HeaderTimestamp: {s.Timestamp},
		HeaderSignature: {Signature(p.Secret, s, p.SignV1)},
		HeaderDelivery:  {s.Delivery},
		HeaderAttempt:   {s.Attempt},
	}
	resp, err := p.Transport.RoundTrip(req)
	if err != nil {
		return Attempt{Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // lets the connection be reused
	a := Attempt{Status: resp.StatusCode, Body: body, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), p.Now())}
	if err != nil && resp.StatusCode == http.StatusOK {
		a.Body = nil // a cut answer is not a notification; the status still counts
	}
	return a
}

// DeliveryID is the X-Cimstream-Delivery of rec: topic/partition/offset.
func DeliveryID(rec stream.Record) string {
	return rec.Topic + "/" + strconv.Itoa(rec.Partition) + "/" + strconv.FormatInt(rec.Offset, 10)
}

// retryAfter reads a Retry-After value: seconds, or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Kind is the outcome of a delivery.
type Kind int

// Outcomes of a delivery; Retry only between attempts.
const (
	Retry     Kind = iota
	Forwarded      // 200 with a DELIVERYNOTIFICATION: forwarded to the notifications topic
	Accepted       // another 2xx: the connector reports later
	Rejected       // a final 4xx: FAILED with that reason code, and a dead letter
	Failed         // retried until the deadline: FAILED/500 and a dead letter
)

// String is the outcome label of metrics.
func (k Kind) String() string {
	return [...]string{"retry", "forwarded", "accepted", "rejected", "failed"}[k]
}

// Answer is what a connector's answer decides for its message (Classify), or Failed after the deadline.
type Answer struct {
	Kind   Kind
	Reason int    // the status of a rejection
	Note   []byte // the notification to forward, a whole CIM message
	// Alone is a DELIVERYNOTIFICATION body answered alone (the seed's form), wrapped into a notification
	// of the original message when recorded; Note is then nil.
	Alone *BodyAlone
	Why   string // for a dead letter and the logs
}

// BodyAlone is what a connector's DELIVERYNOTIFICATION body alone says, checked by the contract's body rules.
type BodyAlone struct {
	MessageID string // the connector's id of the message (non-blank, within the id bound)
	Status    string // one of cim.DeliveryStatuses
	Reason    int    // reasonCode, sent as an integer or a digit string, 0 to MaxReasonCode
	Text      string // markdownText, "" when absent
}

// Classify classifies one attempt (docs/decisions.md, "Webhook answers"):
//   - 200 with a valid CIM message whose body is a DELIVERYNOTIFICATION: forwarded as it came;
//   - 200 with a valid DELIVERYNOTIFICATION body alone (the seed's example): forwarded, wrapped;
//   - any other 2xx, a 200 without a valid notification included: accepted;
//   - 408 and 429: retried (429 waits at least its Retry-After);
//   - any other 4xx: rejected, final;
//   - 3xx (never followed), 5xx, timeouts and connection errors: retried.
func Classify(a Attempt, limits cim.Limits) Answer {
	switch s := a.Status; {
	case a.Err != nil || s == 0:
		return Answer{Kind: Retry, Why: fmt.Sprintf("no answer: %v", a.Err)}
	case s == http.StatusOK && isNotification(a.Body, limits):
		return Answer{Kind: Forwarded, Note: a.Body}
	case s == http.StatusOK:
		if b, ok := bodyAlone(a.Body, limits); ok {
			return Answer{Kind: Forwarded, Alone: &b}
		}
		return Answer{Kind: Accepted}
	case s >= 200 && s < 300:
		return Answer{Kind: Accepted}
	case s == http.StatusRequestTimeout || s == http.StatusTooManyRequests:
		return Answer{Kind: Retry, Why: fmt.Sprintf("HTTP %d", s)}
	case s >= 400 && s < 500:
		return Answer{Kind: Rejected, Reason: s, Why: fmt.Sprintf("HTTP %d", s)}
	}
	return Answer{Kind: Retry, Why: fmt.Sprintf("HTTP %d", a.Status)}
}

// isNotification reports whether body is a CIM message that the inbound rules accept, with a
// DELIVERYNOTIFICATION body: what the CCM would accept from the connector itself.
func isNotification(body []byte, limits cim.Limits) bool {
	if len(body) == 0 || len(body) > maxAnswer {
		return false
	}
	m, err := cim.DecodeLimits(body, limits)
	return err == nil && m.BodyType() == "DELIVERYNOTIFICATION" && len(cim.Validate(m, cim.Inbound)) == 0
}

// bodyPrefix frames a body alone as a message holding only that body, so the contract's own body rules
// (pkg/cim) check it; the header's violations are then ignored.
const bodyPrefix = `{"body":`

// bodyAlone reads a DELIVERYNOTIFICATION body answered alone. It must be one JSON object (checked before
// framing, so nothing in it can close the frame and add keys), within the message size and depth limits,
// and valid by the body rules: messageId non-blank within the id bound, status one of the statuses,
// reasonCode an integer or a digit string from 0 to MaxReasonCode.
func bodyAlone(body []byte, limits cim.Limits) (BodyAlone, bool) {
	b := bytes.TrimSpace(body)
	maxBytes := limits.MaxBytes
	if maxBytes <= 0 {
		maxBytes = cim.DefaultMaxBytes
	}
	if len(b) == 0 || b[0] != '{' || len(b) > maxAnswer || len(b) > maxBytes || !json.Valid(b) {
		return BodyAlone{}, false
	}
	framed := limits
	framed.MaxBytes = len(b) + len(bodyPrefix) + 1
	if framed.MaxDepth <= 0 {
		framed.MaxDepth = cim.DefaultMaxDepth
	}
	framed.MaxDepth++ // the frame's level: the body itself gets the configured depth
	m, err := cim.DecodeLimits(append(append([]byte(bodyPrefix), b...), '}'), framed)
	if err != nil || m.BodyType() != "DELIVERYNOTIFICATION" {
		return BodyAlone{}, false
	}
	for _, v := range cim.Validate(m, cim.Inbound) {
		if v.Path == "body" || strings.HasPrefix(v.Path, "body.") {
			return BodyAlone{}, false
		}
	}
	reason, ok := reasonCode(m.RawValue("body", "reasonCode"))
	if !ok {
		return BodyAlone{}, false
	}
	var out BodyAlone
	out.MessageID, _ = m.String("body", "messageId")
	out.Status, _ = m.String("body", "status")
	out.Text, _ = m.String("body", "markdownText")
	out.Reason = reason
	return out, true
}

// MaxReasonCode bounds a wrapped notification's reasonCode: the CCM reads it as a Java int, so one
// beyond int32 could not be parsed there. Int32 rather than 0..999: a connector relaying a provider's
// error code (WhatsApp's are six digits) with FAILED must not have its failure turned into Accepted.
const MaxReasonCode = math.MaxInt32

// reasonCode reads a reasonCode the body rules accepted: an integer (200, 200.0, 2e2) or a digit string
// (leading zeros allowed), 0 to MaxReasonCode. Every form beyond it (a long digit string, which the rules
// saturate, a long integer, 1e19, 1e400) is refused alike: the answer is then Accepted.
func reasonCode(raw []byte) (int, bool) {
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil || s == "" {
			return 0, false
		}
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return 0, false
			}
		}
		s = strings.TrimLeft(s, "0")
		if s == "" {
			return 0, true
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n > MaxReasonCode {
			return 0, false
		}
		return int(n), true
	}
	f, err := strconv.ParseFloat(string(raw), 64) // exact for every integer up to 2^53, so for the bound
	if err != nil || f != math.Trunc(f) || f < 0 || f > MaxReasonCode {
		return 0, false
	}
	return int(f), true
}

// AttemptResult is the result label of an attempt: 2xx, 3xx, 4xx, 5xx, timeout or error.
func AttemptResult(a Attempt) string {
	switch {
	case a.Err != nil:
		var ne net.Error
		if errors.Is(a.Err, context.DeadlineExceeded) || (errors.As(a.Err, &ne) && ne.Timeout()) {
			return "timeout"
		}
		return "error"
	case a.Status >= 200 && a.Status < 600:
		return strconv.Itoa(a.Status/100) + "xx"
	}
	return "error"
}
