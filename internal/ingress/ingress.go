// Package ingress is the HTTP edge for connectors that speak REST (contract section 6): POST /cim-messages
// (and the older POST /ccm/message/receive) with one CIM message, validated with the inbound rules before
// anything is written, produced to the channel's inbound topic and answered 202 only once the broker
// acknowledged it with acks=all.
//
// The handler is broker-free: it writes through Writer, which internal/kafkaedge.Sink implements.
package ingress

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/retry"
	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/pkg/cim"
)

// Routes are the paths the ingress answers; both take the same request.
var Routes = []string{"/cim-messages", "/ccm/message/receive"}

// routeOther labels requests to any other path, so the route label stays bounded.
const routeOther = "other"

// Writer writes records and reports an error per record once each is acknowledged (acks=all) or failed.
type Writer interface {
	Write(ctx context.Context, outputs []stream.Output) []error
}

// Observer receives the request metrics.
type Observer interface {
	IngressRequest(route string, code int, took time.Duration)
	IngressInFlight(delta int)
}

// Options configure a Handler.
type Options struct {
	// Channels maps serviceIdentifier → channel; DefaultChannel takes the others (empty: 404).
	Channels       map[string]string
	DefaultChannel string
	MaxBodyBytes   int
	MaxIDBytes     int // inbound.maxIdBytes; 0: cim.DefaultMaxIDBytes
	MaxConcurrent  int
	ProduceTimeout time.Duration
	RetryAfter     time.Duration
	// Tokens, when not nil, are the accepted bearer tokens.
	Tokens *Tokens
	// Seen remembers accepted ids; nil disables idempotent retries.
	Seen *Seen
	// MaxInFlightBytes bounds the request bodies held at once (0: unbounded); Budget, when not nil, is the
	// service's memory budget, charged with them.
	MaxInFlightBytes int64
	Budget           *stage.Budget
	// NewID assigns an id to a message without one (tests fix it).
	NewID func() string
}

// OptionsFrom builds Options from the configuration; budget (nil: none) is the service's memory budget.
func OptionsFrom(cfg config.Config, tokens *Tokens, budget *stage.Budget) Options {
	in := cfg.Ingress
	return Options{
		Channels: cfg.ChannelMap(), DefaultChannel: in.DefaultChannel, MaxBodyBytes: in.MaxBodyBytes, MaxIDBytes: cfg.Inbound.MaxIDBytes,
		MaxConcurrent: in.MaxConcurrent, ProduceTimeout: in.ProduceTimeout, RetryAfter: in.RetryAfter,
		Tokens: tokens, Seen: NewSeen(in.IdempotencyWindow, in.IdempotencyMaxEntries, in.IdempotencyMaxBytes, budget),
		MaxInFlightBytes: cfg.IngressInFlightBytes(), Budget: budget,
	}
}

// Handler serves the ingress routes.
type Handler struct {
	opts Options
	w    Writer
	obs  Observer
	log  *zap.Logger
	fair *fair
}

// NewHandler returns the ingress handler; obs may be nil.
func NewHandler(opts Options, w Writer, obs Observer, log *zap.Logger) *Handler {
	if opts.NewID == nil {
		opts.NewID = func() string { return uuid.NewString() }
	}
	if obs == nil {
		obs = nopObserver{}
	}
	fair := newFair(opts.MaxConcurrent, opts.MaxInFlightBytes, opts.Tokens != nil, opts.Budget)
	return &Handler{opts: opts, w: w, obs: obs, log: log, fair: fair}
}

// Accepted is the 202 body.
type Accepted struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// Problem is the body of every error answer; Violations lists every broken rule of a 400.
type Problem struct {
	Status     int             `json:"status"`
	Error      string          `json:"error"`
	Message    string          `json:"message"`
	Violations []cim.Violation `json:"violations,omitempty"`
	// Differs names the top-level members that differ from the first request of a 409.
	Differs []string `json:"differs,omitempty"`
}

// answer is a response, kept whole so an idempotent retry gets the same bytes.
type answer struct {
	code   int
	body   []byte
	header http.Header
	// drain: the body was not read (413); it is read and discarded after the answer, so a client that
	// writes it whole before reading still reads the answer instead of a connection reset.
	drain bool
	// authed: the request got past auth; its connection is not closed for a new one until answered.
	authed bool
}

// A refused body is discarded up to drainBytes within drainTimeout; a client sending more is cut. Before
// auth (401) only up to unauthDrainBytes within unauthDrainTimeout: a client without a token must not hold
// a connection for seconds.
const (
	drainBytes         = 8 << 20
	drainTimeout       = 5 * time.Second
	unauthDrainBytes   = 64 << 10
	unauthDrainTimeout = time.Second
)

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	route := routeOther
	if slices.Contains(Routes, r.URL.Path) {
		route = r.URL.Path
	}
	h.obs.IngressInFlight(1)
	a := h.handle(r, route)
	maps.Copy(w.Header(), a.header)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(a.body)))
	if a.drain {
		h.answerThenDrain(w, r, a)
	} else {
		w.WriteHeader(a.code)
		_, _ = w.Write(a.body)
		if a.authed {
			authenticated(r.Context(), -1)
		}
	}
	h.obs.IngressInFlight(-1)
	h.obs.IngressRequest(route, a.code, time.Since(start))
}

func (h *Handler) handle(r *http.Request, route string) answer {
	if route == routeOther {
		return problem(http.StatusNotFound, "not_found", "no such route: POST a CIM message to /cim-messages", nil)
	}
	if r.Method != http.MethodPost {
		a := problem(http.StatusMethodNotAllowed, "method_not_allowed", "use POST", nil)
		a.header = http.Header{"Allow": {http.MethodPost}}
		return a
	}
	tenant := anyone
	if h.opts.Tokens != nil {
		t, ok := h.opts.Tokens.Lookup(bearer(r))
		if !ok {
			a := problem(http.StatusUnauthorized, "unauthorized", "a valid bearer token is required (Authorization: Bearer <token>)", nil)
			a.header = http.Header{"Www-Authenticate": {`Bearer realm="cimstream"`}}
			return unread(a)
		}
		tenant = t
	}
	authenticated(r.Context(), 1)
	a := h.accept(r, tenant)
	a.authed = true
	return a
}

// accept handles a request past auth.
func (h *Handler) accept(r *http.Request, tenant *Tenant) answer {
	if msg := checkContentType(r.Header.Get("Content-Type")); msg != "" {
		return unread(problem(http.StatusUnsupportedMediaType, "unsupported_media_type", msg, nil))
	}
	limit := int64(h.opts.MaxBodyBytes)
	if r.ContentLength > limit {
		return h.tooLarge()
	}
	// The body is held in memory while it is checked and written: reserve what it may take before reading.
	reserve := limit
	if r.ContentLength >= 0 {
		reserve = r.ContentLength
	}
	release, why := h.fair.acquire(tenant, reserve)
	if why != "" {
		return unread(h.retryLater(http.StatusTooManyRequests, "too_many_requests", why+"; retry later"))
	}
	defer release()
	body, a, ok := h.readBody(r)
	if !ok {
		return a
	}
	// The inbound rules, as the pipeline will check them.
	m, vs := cim.DecodeAndValidate(body, cim.Limits{MaxBytes: h.opts.MaxBodyBytes, MaxIDBytes: h.opts.MaxIDBytes}, cim.Inbound)
	if len(vs) > 0 {
		return problem(http.StatusBadRequest, "invalid_message", strconv.Itoa(len(vs))+" violation(s) of the CIM contract", vs)
	}
	// The serviceIdentifier binding is checked before the channel table, so a token learns nothing of the
	// channels it may not write.
	if why := tenant.refuseServiceIdentifier(m.ServiceIdentifier()); why != "" {
		return problem(http.StatusForbidden, "forbidden", why, nil)
	}
	// A channel-bound token gets one 403 for a channel outside its binding and for none: a 404 here would
	// tell it which serviceIdentifiers the table maps.
	channel, ok := h.channelOf(m)
	if why := tenant.refuseChannel(m.ServiceIdentifier(), channel, ok); why != "" {
		return problem(http.StatusForbidden, "forbidden", why, nil)
	}
	if !ok {
		return problem(http.StatusNotFound, "channel_not_found",
			"no channel is configured for serviceIdentifier "+strconv.Quote(m.ServiceIdentifier()), nil)
	}
	id := m.ID()
	if id == "" {
		return h.produce(r.Context(), m, channel, h.opts.NewID(), true)
	}
	if h.opts.Seen == nil {
		return h.produce(r.Context(), m, channel, id, false)
	}
	key := seenKey{tenant: tenant.id, channel: channel, id: id}
	a, c := h.opts.Seen.Do(key, digestBody(body), func() (answer, bool) {
		a := h.produce(r.Context(), m, channel, id, false)
		return a, a.code == http.StatusAccepted
	})
	if c != nil {
		h.log.Info("ingress: an accepted id sent again with another body; refused 409, not written",
			zap.String("messageId", id), zap.String("channel", channel), zap.Strings("differs", c.differs))
		body, _ := json.Marshal(Problem{Status: http.StatusConflict, Error: "id_reused",
			Message: "body differs from the first request with this id, accepted at " + c.at.UTC().Format(time.RFC3339) +
				": a different message needs a new id; nothing was written", Differs: c.differs})
		return answer{code: http.StatusConflict, body: body}
	}
	return a
}

func (h *Handler) tooLarge() answer {
	return unread(problem(http.StatusRequestEntityTooLarge, "too_large",
		"the body exceeds "+strconv.Itoa(h.opts.MaxBodyBytes)+" bytes", nil))
}

// unread marks an answer given before the body was read: the body is drained after it and the connection
// closed.
func unread(a answer) answer {
	a.drain = true
	if a.header == nil {
		a.header = http.Header{}
	}
	a.header.Set("Connection", "close")
	return a
}

// answerThenDrain sends a, then reads and discards what is left of the body (bounded in bytes and time)
// before the connection is closed: closing with unread data would reset it, and a client still writing
// would lose the answer.
func (h *Handler) answerThenDrain(w http.ResponseWriter, r *http.Request, a answer) {
	rc := http.NewResponseController(w)
	// Without full duplex the server stops reading the body once the answer is written.
	_ = rc.EnableFullDuplex()
	w.WriteHeader(a.code)
	_, _ = w.Write(a.body)
	_ = rc.Flush()
	n, within := int64(drainBytes), drainTimeout
	if a.authed {
		// Answered: the drain is a courtesy a new connection may cut.
		authenticated(r.Context(), -1)
	} else {
		n, within = unauthDrainBytes, unauthDrainTimeout
	}
	_ = rc.SetReadDeadline(time.Now().Add(within))
	_, _ = io.CopyN(io.Discard, r.Body, n)
}

// readBody reads the body up to the limit: 413 over it, 400 when empty or cut short. A body of known length
// is read into a buffer of that size, so it takes no more memory than was reserved for it.
func (h *Handler) readBody(r *http.Request) ([]byte, answer, bool) {
	limit := int64(h.opts.MaxBodyBytes)
	var body []byte
	var err error
	if r.ContentLength >= 0 {
		body = make([]byte, r.ContentLength)
		_, err = io.ReadFull(r.Body, body)
	} else {
		body, err = io.ReadAll(http.MaxBytesReader(nil, r.Body, limit))
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, h.tooLarge(), false
	case err != nil:
		return nil, problem(http.StatusBadRequest, "bad_request", "reading the body: "+err.Error(), nil), false
	case len(body) == 0:
		return nil, problem(http.StatusBadRequest, "invalid_message", "the body is empty",
			cim.Violations{{Code: cim.CodeMalformed, Message: "the body is empty: send one CIM message as JSON"}}), false
	}
	return body, answer{}, true
}

func (h *Handler) channelOf(m *cim.Message) (string, bool) {
	if ch, ok := h.opts.Channels[m.ServiceIdentifier()]; ok && m.ServiceIdentifier() != "" {
		return ch, true
	}
	return h.opts.DefaultChannel, h.opts.DefaultChannel != ""
}

// produce writes the message, with its id set when assign, and answers 202 once acknowledged.
func (h *Handler) produce(ctx context.Context, m *cim.Message, channel, id string, assign bool) answer {
	value := m.Raw()
	if assign {
		var err error
		if value, err = m.Encode(cim.Set(cim.StringValue(id), "id")); err != nil {
			return problem(http.StatusInternalServerError, "internal", "assigning an id: "+err.Error(), nil)
		}
	}
	// Keyed like the connector topics a Kafka connector writes: by customer, so one customer's messages all
	// land on one input partition, in order. That partition is not the sessions stage's: the ingest stage
	// repartitions by session.Key(serviceIdentifier, customer), in order per key again.
	key := cmp.Or(m.ChannelCustomerIdentifier(), m.ConversationID())
	out := stream.Output{Topic: config.InboundTopic(channel), Partition: stream.ByKey, Value: value, Time: time.Now()}
	if key != "" {
		out.Key = []byte(key)
	}
	// The request's own context is not used alone: a client that hangs up must not cut a write the broker
	// may still acknowledge, and the answer must come within produceTimeout either way.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.opts.ProduceTimeout)
	defer cancel()
	if err := h.write(ctx, out); err != nil {
		h.log.Warn("ingress: produce failed", zap.String("topic", out.Topic), zap.String("messageId", id), zap.Error(err))
		if stage.Final(err) {
			return problem(http.StatusInternalServerError, "refused", "the broker refused the record for good: "+err.Error(), nil)
		}
		return h.retryLater(http.StatusServiceUnavailable, "unavailable", "Kafka did not acknowledge the message in time; retry (a retry with the same id is safe)")
	}
	body, _ := json.Marshal(Accepted{ID: id, Status: "ACCEPTED"})
	return answer{code: http.StatusAccepted, body: body}
}

// write retries transient failures (a leader moving, metadata not yet current) until ctx ends, with
// backoff; a retry may duplicate a record whose acknowledgement was lost, which at-least-once allows.
func (h *Handler) write(ctx context.Context, out stream.Output) error {
	backoff := retry.Backoff{Min: 20 * time.Millisecond, Max: 500 * time.Millisecond}
	for {
		err := h.w.Write(ctx, []stream.Output{out})[0]
		if err == nil || stage.Final(err) || !backoff.Wait(ctx) {
			return err
		}
	}
}

// retryLater is a problem answer with Retry-After: opts.RetryAfter in whole seconds, at least 1.
func (h *Handler) retryLater(code int, kind, msg string) answer {
	a := problem(code, kind, msg, nil)
	a.header = http.Header{"Retry-After": {strconv.Itoa(max(1, int((h.opts.RetryAfter+time.Second-1)/time.Second)))}}
	return a
}

func problem(code int, kind, msg string, vs cim.Violations) answer {
	body, _ := json.Marshal(Problem{Status: code, Error: kind, Message: msg, Violations: vs})
	return answer{code: code, body: body}
}

// checkContentType accepts application/json with no charset or UTF-8 (JSON is UTF-8, RFC 8259).
func checkContentType(ct string) string {
	if ct == "" {
		return "Content-Type application/json is required"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return "Content-Type " + strconv.Quote(ct) + " is not application/json"
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return "charset " + strconv.Quote(cs) + " is not UTF-8"
	}
	return ""
}

func bearer(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

type nopObserver struct{}

func (nopObserver) IngressRequest(string, int, time.Duration) {}
func (nopObserver) IngressInFlight(int)                       {}
