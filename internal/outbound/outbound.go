// Package outbound is the CCM → connector pipeline: validate each message from the CCM, route it to
// one or more connector topics, and report its fate to the CCM as a delivery notification.
package outbound

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cimstream/cimstream/internal/route"
	"github.com/cimstream/cimstream/internal/session"
	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/internal/stream/deadletter"
	"github.com/cimstream/cimstream/pkg/cim"
)

// Delivery statuses and reason codes cimstream reports (contract section 4).
const (
	StatusAccepted = "ACCEPTED"
	StatusFailed   = "FAILED"
	ReasonAccepted = 202
	ReasonInvalid  = 400
	ReasonNoRoute  = 404
	ReasonWrite    = 500
)

// Dead-letter codes beyond the validation codes.
const (
	CodeNoRoute        = "no_route"
	CodeDeliveryFailed = stage.CodeDeliveryFailed
)

// Observer is told about each notification (metrics). Dead letters are counted by the stage runtime.
type Observer interface {
	Notified(status string, reasonCode int)
}

type nopObserver struct{}

func (nopObserver) Notified(string, int) {}

// Options configure a Processor.
type Options struct {
	Notifications string
	// Accepted emits ACCEPTED/202 for delivered messages; off for consumers that know only the
	// documented statuses.
	Accepted bool
	MaxBytes int
	// MaxIDBytes bounds identifying strings (inbound.maxIdBytes, both directions; 0: the default).
	MaxIDBytes int
	Observer   Observer
}

// Processor handles the records of one partition of the CCM's outbound topic. Process returns the
// destination writes (or the rejection of an invalid or unroutable message); Settle, once those were
// acknowledged or given up on, the notifications and the dead letters of failed deliveries.
type Processor struct {
	router  *route.Router
	opts    Options
	pending []pending
}

// pending is a message whose notification waits for its destination writes.
type pending struct {
	rec          stream.Record
	msg          *cim.Message // nil when undecodable
	status       string
	reason       int
	text         string
	destinations int
}

// NewProcessor returns a processor.
func NewProcessor(router *route.Router, opts Options) *Processor {
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	return &Processor{router: router, opts: opts}
}

// Process routes a batch; every record gets a pending notification.
func (p *Processor) Process(batch []stream.Record) []stream.Result {
	p.pending = p.pending[:0]
	out := make([]stream.Result, len(batch))
	for i, rec := range batch {
		out[i] = p.process(rec)
	}
	return out
}

// Verdict is what the pipeline decides about a message before writing anything: its violations, or
// where routing sends it. `cimstream routes test` prints it, so the command and the service agree.
type Verdict struct {
	Message    *cim.Message // nil when undecodable
	Violations cim.Violations
	Route      route.Explanation // evaluated only for a valid message
}

// DecideLimits decodes and validates value as an outbound message with the pipeline's limits
// (inbound.maxMessageBytes and inbound.maxIdBytes) and routes it.
func DecideLimits(r *route.Router, value []byte, limits cim.Limits) Verdict {
	m, vs := cim.DecodeAndValidate(value, limits, cim.Outbound)
	v := Verdict{Message: m, Violations: vs}
	if len(vs) == 0 {
		v.Route = r.Explain(route.Message{ServiceIdentifier: m.ServiceIdentifier(), SenderType: m.SenderType(), BodyType: m.BodyType()})
	}
	return v
}

// Status is the notification the verdict leads to, before any write: ACCEPTED/202, FAILED/400 (invalid)
// or FAILED/404 (no destination).
func (v Verdict) Status() (status string, reasonCode int) {
	switch {
	case len(v.Violations) > 0:
		return StatusFailed, ReasonInvalid
	case len(v.Route.Destinations) == 0:
		return StatusFailed, ReasonNoRoute
	}
	return StatusAccepted, ReasonAccepted
}

func (p *Processor) process(rec stream.Record) stream.Result {
	v := DecideLimits(p.router, rec.Value, cim.Limits{MaxBytes: p.opts.MaxBytes, MaxIDBytes: p.opts.MaxIDBytes})
	m, vs := v.Message, v.Violations
	switch _, reason := v.Status(); reason {
	case ReasonInvalid:
		p.pending = append(p.pending, pending{rec: rec, msg: m, status: StatusFailed, reason: ReasonInvalid,
			text: "Invalid message: " + strings.Join(vs.Codes(), ", ")})
		return stream.Result{Reject: vs}
	case ReasonNoRoute:
		p.pending = append(p.pending, pending{rec: rec, msg: m, status: StatusFailed, reason: ReasonNoRoute,
			text: "No route: channel undefined for serviceIdentifier " + strconv.Quote(m.ServiceIdentifier())})
		return stream.Reject(cim.Violation{Path: "header.channelData.serviceIdentifier", Code: CodeNoRoute,
			Message: "no route matches and no channel is configured for " + strconv.Quote(m.ServiceIdentifier())})
	}
	dests := v.Route.Destinations
	headers := append(append(make([]stream.Header, 0, len(rec.Headers)+3), rec.Headers...), deadletter.SourceHeaders(rec)...)
	outs := make([]stream.Output, len(dests))
	for i, d := range dests {
		outs[i] = stream.Output{Topic: d, Partition: stream.ByKey, Key: []byte(m.ChannelCustomerIdentifier()), Value: rec.Value,
			Headers: headers, Time: rec.Time}
	}
	p.pending = append(p.pending, pending{rec: rec, msg: m, status: StatusAccepted, reason: ReasonAccepted,
		text: fmt.Sprintf("Accepted for delivery to %d topic(s)", len(dests)), destinations: len(dests)})
	return stream.Emit(outs...)
}

// Settle returns, for every message of the last batch, its notification, plus a dead letter for those
// whose destination writes were given up on or refused (FAILED/500).
func (p *Processor) Settle(outcomes []stage.Outcome) []stream.Result {
	out := make([]stream.Result, len(outcomes))
	for i, o := range outcomes {
		pd := p.pending[i]
		if o.Err != nil && pd.status == StatusAccepted {
			pd.status, pd.reason = StatusFailed, ReasonWrite
			pd.text = "Delivery failed: a destination topic did not acknowledge the message"
			code := CodeDeliveryFailed
			if errors.Is(o.Err, stage.ErrTooLarge) {
				code = cim.CodeTooLarge
			}
			out[i].Reject = cim.Violations{{Code: code, Message: o.Err.Error()}}
		}
		if pd.status == StatusAccepted && !p.opts.Accepted {
			continue
		}
		p.opts.Observer.Notified(pd.status, pd.reason)
		out[i].Outputs = []stream.Output{p.notification(pd)}
	}
	p.pending = p.pending[:0]
	return out
}

// notification builds the DELIVERYNOTIFICATION for a pending message.
func (p *Processor) notification(pd pending) stream.Output {
	return Notification(p.opts.Notifications, pd.rec, pd.msg, pd.status, pd.reason, pd.text)
}

// Notification builds the DELIVERYNOTIFICATION, for topic, of the message rec carries (msg is nil when
// undecodable). Its id is derived from the message id and outcome (status and reason code), its time is
// the input record's and text never carries error details, so a notification sent again after a crash is
// byte-identical. The webhook egress builds its notifications here too.
func Notification(topic string, rec stream.Record, msg *cim.Message, status string, reason int, text string) stream.Output {
	return NotificationOf(topic, rec, msg, Outcome{Status: status, Reason: reason, Text: text})
}

// Outcome is what a notification reports.
type Outcome struct {
	Status string
	Reason int
	Text   string
	// ID is the notification's id when the caller derives it (the webhook egress, from the delivery);
	// empty: derived from the message id and the outcome.
	ID string
	// ProviderMessageID is header.providerMessageId: a connector's own id of the message, when it named one.
	ProviderMessageID string
}

// NotificationOf is Notification with every part of the outcome given; the same header, body and time rules.
func NotificationOf(topic string, rec stream.Record, msg *cim.Message, o Outcome) stream.Output {
	status, reason, text := o.Status, o.Reason, o.Text
	messageID := ""
	var n note
	if msg != nil {
		messageID = msg.ID()
		n.Header.ConversationID, _ = msg.String("header", "conversationId")
		n.Header.ChannelSessionID, _ = msg.String("header", "channelSessionId")
		n.Header.Customer = rawObject(msg.RawValue("header", "customer"))
		n.Header.ChannelData = rawObject(msg.RawValue("header", "channelData"))
	}
	if strings.TrimSpace(messageID) == "" { // an invalid message may have none: name it by its coordinates
		messageID = session.DeriveID("message", rec.Topic, strconv.Itoa(rec.Partition), strconv.FormatInt(rec.Offset, 10))
	}
	// The reason code is part of the outcome: FAILED/404 and FAILED/500 of one message (a route added
	// between a crash and its replay) are different notifications, not duplicates.
	n.ID = o.ID
	if n.ID == "" {
		n.ID = session.DeriveID("notification", messageID, status, strconv.Itoa(reason))
	}
	n.Header.ProviderMessageID = o.ProviderMessageID
	n.Header.Sender = cim.Sender{ID: "cimstream", Type: "APP", SenderName: "cimstream"}
	n.Header.Timestamp = stream.Millis(rec.Time) // never negative: no CIM consumer accepts year-1 milliseconds
	n.Body = cim.DeliveryNotificationBody{Type: "DELIVERYNOTIFICATION", MessageID: messageID, Status: status,
		ReasonCode: reason, MarkdownText: text}
	value, _ := json.Marshal(n) // strings, numbers and validated raw JSON only
	key := n.Header.ConversationID
	if key == "" {
		key = messageID
	}
	return stream.Output{Topic: topic, Partition: stream.ByKey, Key: []byte(key), Value: value,
		Headers: deadletter.SourceHeaders(rec), Time: rec.Time}
}

type note struct {
	ID     string `json:"id"`
	Header struct {
		Sender           cim.Sender      `json:"sender"`
		ChannelData      json.RawMessage `json:"channelData,omitempty"`
		ChannelSessionID string          `json:"channelSessionId,omitempty"`
		ConversationID   string          `json:"conversationId,omitempty"`
		Customer         json.RawMessage `json:"customer,omitempty"`
		// Only in a connector's notification; omitted, the stage's own stay byte-identical to earlier ones.
		ProviderMessageID string `json:"providerMessageId,omitempty"`
		Timestamp         int64  `json:"timestamp"`
	} `json:"header"`
	Body cim.DeliveryNotificationBody `json:"body"`
}

// rawObject keeps a JSON object as it came, and drops anything else (an invalid message's odd values).
func rawObject(raw []byte) json.RawMessage {
	if len(raw) == 0 || raw[0] != '{' || !json.Valid(raw) {
		return nil
	}
	return raw
}
