package egress

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/cimstream/cimstream/internal/outbound"
	"github.com/cimstream/cimstream/internal/retry"
	"github.com/cimstream/cimstream/internal/session"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/internal/stream/deadletter"
	"github.com/cimstream/cimstream/pkg/cim"
)

// Observer is told what the egress does (metrics). Every method must be cheap and safe for concurrent use.
type Observer interface {
	// Attempted counts one POST by result: 2xx, 3xx, 4xx, 5xx, timeout, error.
	Attempted(channel, result string)
	// Delivered counts a settled message by outcome (forwarded, accepted, rejected, failed) and the time
	// from its fetch to its outcome.
	Delivered(channel, outcome string, took time.Duration)
	// OldestPending is the age (record time) of the oldest message not yet settled, 0 when none.
	OldestPending(channel string, age time.Duration)
}

type nopObserver struct{}

func (nopObserver) Attempted(string, string)                {}
func (nopObserver) Delivered(string, string, time.Duration) {}
func (nopObserver) OldestPending(string, time.Duration)     {}

// RetryPolicy bounds the retries of one message.
type RetryPolicy struct {
	MinBackoff, MaxBackoff time.Duration
	// Deadline is counted from the first attempt: an attempt is made only if it starts before it.
	Deadline time.Duration
}

// deliverer makes the attempts of one message until an answer decides it or the deadline passes.
type deliverer struct {
	channel string
	post    Poster
	retry   RetryPolicy
	slots   chan struct{} // the channel's concurrency limit, held only during a POST
	limits  cim.Limits    // a notification answer's
	obs     Observer
	now     func() time.Time
	sleep   func(ctx context.Context, d time.Duration) bool
}

// deliver returns the message's verdict, and false when ctx ended first (the message stays unsettled).
func (d *deliverer) deliver(ctx context.Context, rec stream.Record) (Answer, bool) {
	return d.deliverDraining(ctx, ctx, rec)
}

// deliverDraining is deliver where a POST already sent may finish under post after ctx ended (a stop or
// a revocation): its answer is still recorded when it decides the message, so the connector does not get
// it again from the next owner. No attempt starts after ctx ended.
func (d *deliverer) deliverDraining(ctx, post context.Context, rec stream.Record) (Answer, bool) {
	if rec.Value == nil {
		// Nothing to send (a tombstone, or a message retention deleted before its turn): the connector
		// never gets an empty POST; FAILED/500 and a dead letter naming the coordinates say what was lost.
		return Answer{Kind: Failed, Why: "no message to deliver: the record has no value (deleted from the topic before its turn, or a tombstone)"}, true
	}
	deadline := d.now().Add(d.retry.Deadline)
	backoff := retry.Backoff{Min: d.retry.MinBackoff, Max: d.retry.MaxBackoff}
	for n := 1; ; n++ {
		select {
		case d.slots <- struct{}{}:
		case <-ctx.Done():
			return Answer{}, false
		}
		if ctx.Err() != nil {
			<-d.slots
			return Answer{}, false
		}
		a := d.post.Post(post, rec, n)
		<-d.slots
		if post.Err() != nil {
			return Answer{}, false // cut short: no answer to go by
		}
		d.obs.Attempted(d.channel, AttemptResult(a))
		v := Classify(a, d.limits)
		if v.Kind != Retry {
			return v, true
		}
		if ctx.Err() != nil {
			return Answer{}, false
		}
		// A failing customer sleeps without a slot, so it never holds up the others.
		wait := max(backoff.Next(), a.RetryAfter)
		if !d.now().Add(wait).Before(deadline) {
			return Answer{Kind: Failed, Why: fmt.Sprintf("%d attempts in %v, the last: %s", n, d.retry.Deadline, v.Why)}, true
		}
		if !d.sleep(ctx, wait) {
			return Answer{}, false
		}
	}
}

// Dead-letter codes of the egress.
const (
	CodeRejected = "webhook_rejected" // the connector answered a final 4xx
	CodeFailed   = "webhook_failed"   // no 2xx before the deadline
	// CodeNotificationRefused: the connector's DELIVERYNOTIFICATION (the dead letter's value) was refused
	// for good by the notifications topic.
	CodeNotificationRefused = "webhook_notification_refused"
)

// HeaderValueMissing ("true") marks a dead letter of a record that had no value when its turn came
// (deleted by retention, or a tombstone): its own value is empty, not null.
const HeaderValueMissing = stream.HeaderValueMissing

// Reason code of a message never accepted before the deadline.
const ReasonFailed = 500

// outcome turns a verdict into the Result that settles the message: the forwarded notification, or a
// FAILED notification (built as the outbound stage builds its own) and a dead letter; nothing for an
// accepted message, whose ACCEPTED/202 the outbound stage already sent.
type outcome struct {
	notifications string
	limits        cim.Limits // a wrapped notification's size, as a whole one's answer is checked
}

func (o outcome) result(rec stream.Record, v Answer) stream.Result {
	if v.Kind == Accepted {
		return stream.Result{}
	}
	msg, _ := cim.Decode(rec.Value) // nil for an undecodable value: the notification names its coordinates
	switch v.Kind {
	case Forwarded:
		if v.Alone != nil {
			return o.wrapped(rec, msg, *v.Alone)
		}
		key := []byte(nil)
		if msg != nil {
			key = []byte(msg.ConversationID())
		}
		if len(key) == 0 {
			key = rec.Key
		}
		return stream.Emit(stream.Output{Topic: o.notifications, Partition: stream.ByKey, Key: key, Value: v.Note,
			Headers: deadletter.SourceHeaders(rec), Time: rec.Time})
	case Rejected:
		return stream.Result{Outputs: []stream.Output{outbound.Notification(o.notifications, rec, msg, outbound.StatusFailed, v.Reason,
			fmt.Sprintf("Rejected by the connector: HTTP %d", v.Reason))},
			Reject: cim.Violations{{Code: CodeRejected, Message: "the connector answered " + v.Why}}}
	case Failed:
		return stream.Result{Outputs: []stream.Output{outbound.Notification(o.notifications, rec, msg, outbound.StatusFailed, ReasonFailed,
			"Delivery failed: the connector did not accept the message before the retry deadline")},
			Reject: cim.Violations{{Code: CodeFailed, Message: v.Why}}}
	}
	return stream.Result{}
}

// wrapped builds the notification of a DELIVERYNOTIFICATION body answered alone, as the outbound stage
// builds its own: the original's ids, customer and channelData, the connector's status, reasonCode and
// text. Its messageId is the original message's id, which the CCM knows the message by; the connector's
// own id (a provider's, or the seed's placeholder) goes to header.providerMessageId when it differs. The id
// (wrappedID) is derived from the delivery and everything of the answer that is written, and the time is
// the record's, so one id always comes with the same bytes: a redelivery answered the same writes them
// again, one answered otherwise is another notification. One over the message size limit is a dead
// letter carrying it, as one the notifications topic refuses.
func (o outcome) wrapped(rec stream.Record, msg *cim.Message, b BodyAlone) stream.Result {
	provider := b.MessageID
	if msg != nil && provider == msg.ID() {
		provider = "" // the connector echoed the original's id: nothing more to keep
	}
	out := outbound.NotificationOf(o.notifications, rec, msg, outbound.Outcome{Status: b.Status, Reason: b.Reason, Text: b.Text,
		ID: wrappedID(DeliveryID(rec), b.Status, b.Reason, b.Text, provider), ProviderMessageID: provider})
	limit := o.limits.MaxBytes
	if limit <= 0 {
		limit = cim.DefaultMaxBytes
	}
	if len(out.Value) <= limit {
		return stream.Emit(out)
	}
	return stream.Result{Reject: cim.Violations{{Code: CodeNotificationRefused, Message: fmt.Sprintf(
		"the connector's DELIVERYNOTIFICATION, wrapped, is %d bytes; the message size limit is %d bytes", len(out.Value), limit)}},
		DeadLetterValue: out.Value}
}

// wrappedNamespace is the UUIDv5 namespace of wrapped notification ids, derived from cimstream's and
// apart from it: no id session.DeriveID makes (the outbound stage's notifications, whose message id may
// hold anything, NUL included; lifecycle events, named first by a session id) can equal one.
var wrappedNamespace = uuid.NewSHA1(session.Namespace, []byte("webhook-notification"))

// wrappedID is the id of a wrapped notification: the delivery (topic/partition/offset), status,
// reasonCode, markdownText and providerMessageId, each quoted so that no two answers name the same
// (a NUL or a quote in the text cannot shift a part into the next one).
func wrappedID(delivery, status string, reason int, text, provider string) string {
	name := make([]byte, 0, 64+len(text)+len(provider))
	for i, p := range [...]string{delivery, status, strconv.Itoa(reason), text, provider} {
		if i > 0 {
			name = append(name, 0)
		}
		name = strconv.AppendQuote(name, p)
	}
	return uuid.NewSHA1(wrappedNamespace, name).String()
}
