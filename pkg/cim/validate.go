package cim

import (
	"strconv"
	"strings"
)

// Direction selects the rule set: inbound messages come from connectors, outbound from the CCM.
type Direction int

const (
	Inbound Direction = iota + 1
	Outbound
)

func (d Direction) String() string {
	switch d {
	case Inbound:
		return "inbound"
	case Outbound:
		return "outbound"
	}
	return "unknown"
}

// ParseDirection reads "inbound" or "outbound".
func ParseDirection(s string) (Direction, bool) {
	switch strings.ToLower(s) {
	case "inbound":
		return Inbound, true
	case "outbound":
		return Outbound, true
	}
	return 0, false
}

// SenderTypes are the allowed header.sender.type values (compared case-insensitively).
var SenderTypes = []string{"AGENT", "BOT", "CUSTOMER", "CONNECTOR", "APP", "SYSTEM"}

// KnownIntents are the documented header.intent values; others are accepted (see UnknownIntent).
var KnownIntents = []string{"START_CHAT", "END_CHAT", "START_VOICE", "END_VOICE", "START_CONVERSATION", "REPLY_TO",
	"UPDATE", "CALL_LEG_STARTED", "CALL_LEG_ENDED", "ASSIGN_RESOURCE_REQUESTED", "IVR_AGGREGATED_ACTIVITY"}

// BodyTypes are the supported body.type values (exact upper case).
var BodyTypes = []string{"PLAIN", "IMAGE", "VIDEO", "AUDIO", "FILE", "STICKER", "LOCATION", "CONTACT", "URL", "BUTTON",
	"WRAPUP", "DELIVERYNOTIFICATION", "ACTION", "CAROUSEL", "TEMPLATE", "CUSTOM", "RECEIPT", "VOICE", "EMAIL",
	"NOTIFICATION", "DELETEDNOTIFICATION", "COMMENT", "MULTIMEDIA"}

// DeliveryStatuses are the allowed DELIVERYNOTIFICATION statuses.
var DeliveryStatuses = []string{"DELIVERED", "READ", "CONNECTED", "FAILED", "ACCEPTED"}

// Validate returns every violation of the contract's rules for the direction; nil means valid.
// Identifying strings are bounded by the Limits the message was decoded with (MaxIDBytes).
func Validate(m *Message, dir Direction) Violations {
	v := validator{dir: dir, maxID: m.limits.MaxIDBytes}
	v.message(m.rootRef())
	return v.out
}

// UnknownIntent reports whether header.intent is set to a value outside KnownIntents (accepted, but
// worth a warning and a metric).
func UnknownIntent(m *Message) bool {
	r := m.field(fIntent)
	return r.is(kindString) && r.n().end-r.n().start > 2 && !r.oneOf(KnownIntents, false)
}

type validator struct {
	dir   Direction
	maxID int // bytes an identifying string may have
	out   Violations
}

func (v *validator) add(at *loc, code, msg string) {
	v.out = append(v.out, Violation{Path: at.String(), Code: code, Message: msg})
}

func child(parent *loc, key string) loc { return loc{parent: parent, key: key, index: -1} }

func (v *validator) message(root ref) {
	top := loc{index: -1}
	id, idAt := root.get("id"), child(&top, "id")
	switch {
	case !id.ok():
		if v.dir == Outbound {
			v.add(&idAt, CodeRequired, "id is required on outbound messages")
		}
	default:
		v.nonBlank(id, &idAt, true)
		v.ident(id, &idAt)
	}
	header, headerAt := root.get("header"), child(&top, "header")
	if v.object(header, &headerAt, true) {
		v.header(header, &headerAt)
	}
	body, bodyAt := root.get("body"), child(&top, "body")
	if v.object(body, &bodyAt, true) {
		v.body(body, &bodyAt)
	}
}

func (v *validator) header(h ref, at *loc) {
	outbound := v.dir == Outbound

	sender, senderAt := h.get("sender"), child(at, "sender")
	if v.object(sender, &senderAt, true) {
		f, fAt := sender.get("id"), child(&senderAt, "id")
		v.nonBlank(f, &fAt, true)
		v.ident(f, &fAt)
		f, fAt = sender.get("type"), child(&senderAt, "type")
		if v.str(f, &fAt, true) && !f.oneOf(SenderTypes, true) {
			v.add(&fAt, CodeEnum, "must be one of "+strings.Join(SenderTypes, ", ")+" (any case), not "+quote(f))
		}
		f, fAt = sender.get("senderName"), child(&senderAt, "senderName")
		v.str(f, &fAt, true)
		v.optional(sender, &senderAt, kindObject, "additionalDetail")
	}

	conv, convAt := h.get("conversationId"), child(at, "conversationId")
	sess, sessAt := h.get("channelSessionId"), child(at, "channelSessionId")
	if outbound {
		v.nonBlank(conv, &convAt, true)
		v.nonBlank(sess, &sessAt, true)
	} else {
		v.str(conv, &convAt, false)
		v.str(sess, &sessAt, false)
	}
	v.ident(conv, &convAt)
	v.ident(sess, &sessAt)

	cd, cdAt := h.get("channelData"), child(at, "channelData")
	switch {
	case cd.present():
		if v.object(cd, &cdAt, true) {
			v.channelData(cd, &cdAt)
		}
	case outbound:
		v.add(&cdAt, CodeRequired, "channelData is required on outbound messages")
	case !conv.nonBlank():
		v.add(&cdAt, CodeRequired, "channelData is required unless header.conversationId names an existing conversation")
	}

	cust, custAt := h.get("customer"), child(at, "customer")
	if v.object(cust, &custAt, outbound) {
		for _, key := range [...]string{"id", "_id"} {
			f, fAt := cust.get(key), child(&custAt, key)
			v.str(f, &fAt, false)
			v.ident(f, &fAt)
		}
		v.optional(cust, &custAt, kindBool, "isAnonymous")
	}

	ts, tsAt := h.get("timestamp"), child(at, "timestamp")
	v.timestamp(ts, &tsAt)

	intent, intentAt := h.get("intent"), child(at, "intent")
	if v.str(intent, &intentAt, false) && (intent.equals("REPLY_TO") || intent.equals("UPDATE")) {
		orig, origAt := h.get("originalMessageId"), child(at, "originalMessageId")
		if !orig.present() {
			v.add(&origAt, CodeRequired, "originalMessageId is required with intent "+intent.str())
		}
	}

	stamps, stampsAt := h.get("stamps"), child(at, "stamps")
	v.stringArray(stamps, &stampsAt, false)
	v.optional(h, at, kindObject, "entities", "language", "securityInfo", "schedulingMetaData")
	v.optional(h, at, kindString, "roomId", "providerMessageId")
	orig, origAt := h.get("originalMessageId"), child(at, "originalMessageId")
	if orig.present() && (intent.equals("REPLY_TO") || intent.equals("UPDATE")) {
		v.nonBlank(orig, &origAt, true)
	} else {
		v.str(orig, &origAt, false)
	}
	v.ident(orig, &origAt)
}

func (v *validator) channelData(cd ref, at *loc) {
	for _, key := range [...]string{"serviceIdentifier", "channelCustomerIdentifier"} {
		f, fAt := cd.get(key), child(at, key)
		v.nonBlank(f, &fAt, true)
		v.ident(f, &fAt)
	}
	v.optional(cd, at, kindString, "customerFirstName", "customerLastName")
	f, fAt := cd.get("requestPriority"), child(at, "requestPriority")
	v.intOrDigits(f, &fAt, false, 0, 10)
	attrs, attrsAt := cd.get("additionalAttributes"), child(at, "additionalAttributes")
	if v.typed(attrs, &attrsAt, kindArray, false) {
		attrs.items(func(i int, item ref) {
			itemAt := loc{parent: &attrsAt, index: i}
			if v.object(item, &itemAt, true) {
				k, kAt := item.get("key"), child(&itemAt, "key")
				v.str(k, &kAt, true)
			}
		})
	}
}

func (v *validator) timestamp(ts ref, at *loc) {
	if !ts.present() {
		return
	}
	switch ts.kind() {
	case kindNumber:
		n, ok := ts.integer()
		switch {
		case !ok:
			v.add(at, CodeType, "must be an integer (epoch milliseconds), not "+string(ts.bytes()))
		case n < 0:
			v.add(at, CodeRange, "must not be negative")
		}
	case kindString:
		if _, ok := ts.digits(); ok {
			return
		}
		t, ok := parseRFC3339(ts)
		switch {
		case !ok:
			v.add(at, CodeFormat, "must be epoch milliseconds (a number or a digit string) or an RFC 3339 date-time, not "+quote(ts))
		case t.UnixMilli() < 0:
			// Epoch milliseconds are never negative in CIM; a date before 1970 would be emitted negative.
			v.add(at, CodeRange, "must not be before 1970-01-01T00:00:00Z, got "+quote(ts))
		}
	default:
		v.add(at, CodeType, "must be epoch milliseconds or an RFC 3339 string, not "+articled(ts.kind()))
	}
}

func (v *validator) body(b ref, at *loc) {
	t, tAt := b.get("type"), child(at, "type")
	if !v.str(t, &tAt, true) {
		return
	}
	md, mdAt := b.get("markdownText"), child(at, "markdownText")
	bodyType := t.str()
	if !t.oneOf(BodyTypes, false) {
		v.add(&tAt, CodeUnsupported, quote(t)+" is not a supported body type; use one of "+strings.Join(BodyTypes, ", "))
		v.str(md, &mdAt, false)
		return
	}
	if bodyType == "PLAIN" {
		v.nonBlank(md, &mdAt, true)
	} else {
		v.str(md, &mdAt, false)
	}
	field := func(key string) (ref, loc) { return b.get(key), child(at, key) }

	switch bodyType {
	case "IMAGE", "VIDEO", "AUDIO", "FILE":
		att, attAt := field("attachment")
		if v.object(att, &attAt, true) {
			v.attachment(att, &attAt, true)
		}
		v.optional(b, at, kindString, "caption")
	case "MULTIMEDIA":
		att, attAt := field("attachment")
		if v.object(att, &attAt, false) {
			v.attachment(att, &attAt, false)
		}
	case "STICKER":
		att, attAt := field("attachment")
		url, urlAt := field("mediaUrl")
		if v.object(att, &attAt, false) {
			u, uAt := att.get("mediaUrl"), child(&attAt, "mediaUrl")
			v.url(u, &uAt, !url.present())
		}
		if url.present() || !att.present() {
			v.url(url, &urlAt, true)
		}
		v.optional(b, at, kindString, "stickerId")
	case "LOCATION":
		l, lAt := field("location")
		if v.object(l, &lAt, true) {
			lat, latAt := l.get("latitude"), child(&lAt, "latitude")
			v.numberIn(lat, &latAt, -90, 90)
			lon, lonAt := l.get("longitude"), child(&lAt, "longitude")
			v.numberIn(lon, &lonAt, -180, 180)
		}
	case "CONTACT":
		cs, csAt := field("contacts")
		v.nonEmptyArray(cs, &csAt, func(item ref, itemAt *loc) {
			name, nameAt := item.get("name"), child(itemAt, "name")
			if v.object(name, &nameAt, true) {
				fn, fnAt := name.get("formattedName"), child(&nameAt, "formattedName")
				v.nonBlank(fn, &fnAt, true)
			}
			phones, phonesAt := item.get("phones"), child(itemAt, "phones")
			if v.typed(phones, &phonesAt, kindArray, false) {
				phones.items(func(j int, p ref) {
					pAt := loc{parent: &phonesAt, index: j}
					if v.object(p, &pAt, true) {
						f, fAt := p.get("phone"), child(&pAt, "phone")
						v.nonBlank(f, &fAt, true)
					}
				})
			}
		})
	case "URL":
		u, uAt := field("mediaUrl")
		v.url(u, &uAt, true)
	case "BUTTON":
		bt, btAt := field("buttonMessageType")
		v.enum(bt, &btAt, []string{"BUTTON", "QUICK_REPLIES"})
		bs, bsAt := field("buttons")
		v.nonEmptyArray(bs, &bsAt, v.button)
	case "WRAPUP":
		note, noteAt := field("note")
		v.str(note, &noteAt, false)
		ws, wsAt := field("wrapups")
		if v.typed(ws, &wsAt, kindArray, true) {
			if ws.length() == 0 && !note.nonBlank() {
				v.add(&wsAt, CodeEmpty, "must not be empty unless body.note is set")
			}
			ws.items(func(i int, item ref) {
				itemAt := loc{parent: &wsAt, index: i}
				if v.object(item, &itemAt, true) {
					for _, key := range [...]string{"categoryName", "value"} {
						f, fAt := item.get(key), child(&itemAt, key)
						v.nonBlank(f, &fAt, true)
					}
				}
			})
		}
	case "DELIVERYNOTIFICATION":
		id, idAt := field("messageId")
		v.nonBlank(id, &idAt, true)
		v.ident(id, &idAt)
		st, stAt := field("status")
		v.enum(st, &stAt, DeliveryStatuses)
		rc, rcAt := field("reasonCode")
		v.intOrDigits(rc, &rcAt, true, 0, -1)
	case "ACTION":
		name, nameAt := field("name")
		v.nonBlank(name, &nameAt, true)
		data, dataAt := field("data")
		v.object(data, &dataAt, true)
	case "CAROUSEL":
		ct, ctAt := field("carouselMessageType")
		v.enum(ct, &ctAt, []string{"MEDIA", "GENERIC_RICH_MEDIA"})
		els, elsAt := field("elements")
		v.nonEmptyArray(els, &elsAt, func(item ref, itemAt *loc) {
			bs, bsAt := item.get("buttons"), child(itemAt, "buttons")
			if v.typed(bs, &bsAt, kindArray, false) {
				bs.items(func(i int, b ref) {
					bAt := loc{parent: &bsAt, index: i}
					v.button(b, &bAt)
				})
			}
		})
	case "TEMPLATE":
		for _, key := range [...]string{"namespace", "name"} {
			f, fAt := field(key)
			v.nonBlank(f, &fAt, true)
		}
		lang, langAt := field("language")
		if v.object(lang, &langAt, true) {
			c, cAt := lang.get("code"), child(&langAt, "code")
			v.nonBlank(c, &cAt, true)
		}
		v.optional(b, at, kindArray, "components")
	case "RECEIPT":
		v.receipt(b, at)
	case "VOICE":
		v.optional(b, at, kindString, "callId", "leg")
		rc, rcAt := field("reasonCode")
		if rc.present() && !rc.is(kindString) && !rc.is(kindNumber) {
			v.add(&rcAt, CodeType, "must be a string or a number, not "+articled(rc.kind()))
		}
	case "EMAIL":
		v.optional(b, at, kindString, "subject", "from", "htmlBody")
		for _, key := range [...]string{"replyTo", "recipientsTo", "recipientsCc", "recipientsBcc"} {
			f, fAt := field(key)
			v.stringArray(f, &fAt, false)
		}
		f, fAt := field("receivingDate")
		v.integerIn(f, &fAt, false, 0, -1)
		v.optional(b, at, kindArray, "emailThreads")
		atts, attsAt := field("attachments")
		if v.typed(atts, &attsAt, kindArray, false) {
			atts.items(func(i int, a ref) {
				aAt := loc{parent: &attsAt, index: i}
				if v.object(a, &aAt, true) {
					v.attachment(a, &aAt, false)
				}
			})
		}
	case "NOTIFICATION":
		v.optional(b, at, kindString, "notificationType")
		v.optional(b, at, kindObject, "notificationData")
	case "DELETEDNOTIFICATION":
		v.optional(b, at, kindString, "messageId")
		ts, tsAt := field("timestamp")
		if ts.present() && !ts.is(kindString) && !ts.is(kindNumber) {
			v.add(&tsAt, CodeType, "must be a string or a number, not "+articled(ts.kind()))
		}
	case "COMMENT":
		v.optional(b, at, kindString, "postId", "itemType")
		att, attAt := field("attachment")
		if v.object(att, &attAt, false) {
			v.attachment(att, &attAt, false)
		}
	}
}

func (v *validator) button(b ref, at *loc) {
	if !v.object(b, at, true) {
		return
	}
	for _, key := range [...]string{"title", "type", "payload"} {
		f, fAt := b.get(key), child(at, key)
		v.nonBlank(f, &fAt, true)
	}
}

// attachment checks mediaUrl (a URL, required when strict), size and mimeType.
func (v *validator) attachment(a ref, at *loc, strict bool) {
	u, uAt := a.get("mediaUrl"), child(at, "mediaUrl")
	if strict || u.present() {
		v.url(u, &uAt, true)
	}
	size, sizeAt := a.get("size"), child(at, "size")
	v.integerIn(size, &sizeAt, false, 0, -1)
	v.optional(a, at, kindString, "mimeType", "thumbnail", "mediaLabel", "mediaName")
}

func (v *validator) receipt(b ref, at *loc) {
	v.optional(b, at, kindString, "recipientName", "merchantName", "orderNumber", "currency", "paymentMethode", "timestamp", "templateType")
	v.optional(b, at, kindBool, "sharable")
	els, elsAt := b.get("elements"), child(at, "elements")
	if v.typed(els, &elsAt, kindArray, false) {
		els.items(func(i int, e ref) {
			eAt := loc{parent: &elsAt, index: i}
			if !v.object(e, &eAt, true) {
				return
			}
			v.optional(e, &eAt, kindString, "title", "subtitle", "currency", "imageUrl")
			for _, key := range [...]string{"quantity", "price"} {
				f, fAt := e.get(key), child(&eAt, key)
				v.integerIn(f, &fAt, false, 0, -1)
			}
		})
	}
	v.optional(b, at, kindObject, "address")
	sum, sumAt := b.get("summary"), child(at, "summary")
	if v.object(sum, &sumAt, false) {
		for _, key := range [...]string{"subtotal", "shippingCost", "totalTax", "totalCost"} {
			f, fAt := sum.get(key), child(&sumAt, key)
			v.integerIn(f, &fAt, false, -1, -1)
		}
	}
	adj, adjAt := b.get("adjustments"), child(at, "adjustments")
	if v.typed(adj, &adjAt, kindArray, false) {
		adj.items(func(i int, a ref) {
			aAt := loc{parent: &adjAt, index: i}
			if v.object(a, &aAt, true) {
				v.optional(a, &aAt, kindString, "name")
				amt, amtAt := a.get("amount"), child(&aAt, "amount")
				v.integerIn(amt, &amtAt, false, -1, -1)
			}
		})
	}
}

// --- primitive checks. Each returns whether the value is present and of the right type, so callers
// can descend into it. Optional fields accept null as absent.

func (v *validator) missing(r ref, at *loc, required bool) bool {
	if r.present() {
		return false
	}
	if required {
		if r.ok() {
			v.add(at, CodeRequired, "is required and must not be null")
		} else {
			v.add(at, CodeRequired, "is required")
		}
	}
	return true
}

// optional checks that each of keys of obj, when present and not null, is of kind k.
func (v *validator) optional(obj ref, at *loc, k kind, keys ...string) {
	for _, key := range keys {
		f, fAt := obj.get(key), child(at, key)
		v.typed(f, &fAt, k, false)
	}
}

func (v *validator) typed(r ref, at *loc, k kind, required bool) bool {
	if v.missing(r, at, required) {
		return false
	}
	if r.kind() != k {
		v.add(at, CodeType, "must be "+articled(k)+", not "+articled(r.kind()))
		return false
	}
	return true
}

func (v *validator) object(r ref, at *loc, required bool) bool {
	return v.typed(r, at, kindObject, required)
}

func (v *validator) str(r ref, at *loc, required bool) bool {
	return v.typed(r, at, kindString, required)
}

func (v *validator) nonBlank(r ref, at *loc, required bool) bool {
	if !v.str(r, at, required) {
		return false
	}
	if !r.nonBlank() {
		v.add(at, CodeEmpty, "must not be blank")
		return false
	}
	return true
}

// ident bounds an identifying string (one the session state or the ingress's memory keeps) to maxID
// bytes of its unescaped UTF-8; other kinds are checked by the caller.
func (v *validator) ident(r ref, at *loc) {
	if !r.is(kindString) {
		return
	}
	n := len(r.strBytes())
	if n <= v.maxID {
		return // an escape is never shorter than what it stands for
	}
	if r.n().escaped {
		n = len(unescape(r.strBytes()))
	}
	if n > v.maxID {
		v.add(at, CodeTooLong, "is "+strconv.Itoa(n)+" bytes long; the limit is "+strconv.Itoa(v.maxID)+" bytes for an identifying string")
	}
}

func (v *validator) enum(r ref, at *loc, allowed []string) {
	if v.str(r, at, true) && !r.oneOf(allowed, false) {
		v.add(at, CodeEnum, "must be one of "+strings.Join(allowed, ", ")+", not "+quote(r))
	}
}

func (v *validator) stringArray(r ref, at *loc, required bool) {
	if !v.typed(r, at, kindArray, required) {
		return
	}
	r.items(func(i int, item ref) {
		itemAt := loc{parent: at, index: i}
		v.str(item, &itemAt, true)
	})
}

func (v *validator) nonEmptyArray(r ref, at *loc, each func(item ref, at *loc)) {
	if !v.typed(r, at, kindArray, true) {
		return
	}
	if r.length() == 0 {
		v.add(at, CodeEmpty, "must have at least one element")
		return
	}
	parent := at.detached()
	r.items(func(i int, item ref) {
		itemAt := loc{parent: parent, index: i}
		if v.object(item, &itemAt, true) {
			each(item, &itemAt)
		}
	})
}

// url requires an absolute http or https URL.
func (v *validator) url(r ref, at *loc, required bool) {
	if v.nonBlank(r, at, required) && !isHTTPURL(r.str()) {
		v.add(at, CodeFormat, "must be an absolute http(s) URL, not "+quote(r))
	}
}

// isHTTPURL matches ^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#]+\S*$ (the same rule the JSON Schemas use).
func isHTTPURL(s string) bool {
	rest, ok := cutPrefixFold(s, "https://")
	if !ok {
		if rest, ok = cutPrefixFold(s, "http://"); !ok {
			return false
		}
	}
	host := 0
	for host < len(rest) && !strings.ContainsRune(" \t\n\r\f/?#", rune(rest[host])) {
		host++
	}
	return host > 0 && !strings.ContainsAny(rest, " \t\n\r\f")
}

// cutPrefixFold cuts an ASCII prefix, ignoring ASCII case only (Unicode folding would let "ſ" match "s").
func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) {
		return s, false
	}
	for i := 0; i < len(prefix); i++ {
		if c := s[i]; c != prefix[i] && c|0x20 != prefix[i] {
			return s, false
		}
	}
	return s[len(prefix):], true
}

func (v *validator) numberIn(r ref, at *loc, lo, hi float64) {
	if !v.typed(r, at, kindNumber, true) {
		return
	}
	if f, _ := r.number(); f < lo || f > hi {
		v.add(at, CodeRange, "must be between "+ftoa(lo)+" and "+ftoa(hi)+", not "+string(r.bytes()))
	}
}

// integerIn checks an integer in [lo, hi]; a negative bound means unbounded on that side, except that
// lo = 0 means "not negative".
func (v *validator) integerIn(r ref, at *loc, required bool, lo, hi int64) {
	if !v.typed(r, at, kindNumber, required) {
		return
	}
	n, ok := r.integer()
	if !ok {
		v.add(at, CodeType, "must be an integer, not "+string(r.bytes()))
		return
	}
	v.bounds(n, at, lo, hi)
}

func (v *validator) bounds(n int64, at *loc, lo, hi int64) {
	if (lo >= 0 && n < lo) || (hi >= 0 && n > hi) {
		v.add(at, CodeRange, "must be "+rangeText(lo, hi)+", not "+strconv.FormatInt(n, 10))
	}
}

func rangeText(lo, hi int64) string {
	if hi < 0 {
		return "at least " + strconv.FormatInt(lo, 10)
	}
	return "between " + strconv.FormatInt(lo, 10) + " and " + strconv.FormatInt(hi, 10)
}

// intOrDigits accepts an integer or a string of digits, within [lo, hi] (hi < 0: no upper bound).
func (v *validator) intOrDigits(r ref, at *loc, required bool, lo, hi int64) {
	if v.missing(r, at, required) {
		return
	}
	switch r.kind() {
	case kindNumber:
		v.integerIn(r, at, true, lo, hi)
	case kindString:
		n, ok := r.digits()
		if !ok {
			v.add(at, CodeFormat, "must be an integer or a string of digits, not "+quote(r))
			return
		}
		v.bounds(n, at, lo, hi)
	default:
		v.add(at, CodeType, "must be an integer or a string of digits, not "+articled(r.kind()))
	}
}

// oneOf reports whether a string value is in allowed, optionally ignoring case.
func (r ref) oneOf(allowed []string, fold bool) bool {
	if !r.is(kindString) {
		return false
	}
	s := r.strBytes()
	if r.n().escaped {
		s = []byte(unescape(s))
	}
	for _, a := range allowed {
		if string(s) == a || (fold && strings.EqualFold(string(s), a)) {
			return true
		}
	}
	return false
}

func quote(r ref) string {
	s := r.str()
	if len(s) > 64 {
		s = s[:61] + "..."
	}
	return strconv.Quote(s)
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
