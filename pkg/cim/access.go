package cim

import (
	"strings"
	"time"
)

// String returns the string at a path of object keys, e.g. String("header", "channelData",
// "serviceIdentifier"); ok is false when it is absent or not a string.
func (m *Message) String(path ...string) (s string, ok bool) {
	r := m.rootRef().path(path...)
	if !r.is(kindString) {
		return "", false
	}
	return r.str(), true
}

// Has reports whether a path exists with a non-null value.
func (m *Message) Has(path ...string) bool { return m.rootRef().path(path...).present() }

// RawValue returns the JSON bytes at a path, or nil when absent.
func (m *Message) RawValue(path ...string) []byte {
	r := m.rootRef().path(path...)
	if !r.ok() {
		return nil
	}
	return r.bytes()
}

// The accessors below read indexed fields (see field): no walk from the root.

// ID is the message id, "" when absent.
func (m *Message) ID() string { return m.field(fID).str() }

// BodyType is body.type as sent.
func (m *Message) BodyType() string { return m.field(fBodyType).str() }

// Intent is header.intent, "" when absent or null.
func (m *Message) Intent() string { return m.field(fIntent).str() }

// SenderType is header.sender.type in upper case.
func (m *Message) SenderType() string { return strings.ToUpper(m.field(fSenderType).str()) }

// ServiceIdentifier is header.channelData.serviceIdentifier.
func (m *Message) ServiceIdentifier() string { return m.field(fServiceIdentifier).str() }

// ChannelCustomerIdentifier is header.channelData.channelCustomerIdentifier.
func (m *Message) ChannelCustomerIdentifier() string {
	return m.field(fChannelCustomerIdentifier).str()
}

// HasChannelData reports whether header.channelData is an object.
func (m *Message) HasChannelData() bool { return m.field(fChannelData).is(kindObject) }

// ChannelSessionID is header.channelSessionId ("" when absent, null or blank).
func (m *Message) ChannelSessionID() string { return nonBlankStr(m.field(fChannelSessionID)) }

// ConversationID is header.conversationId ("" when absent, null or blank).
func (m *Message) ConversationID() string { return nonBlankStr(m.field(fConversationID)) }

func nonBlankStr(r ref) string {
	if !r.nonBlank() {
		return ""
	}
	return r.str()
}

// CustomerName is customerFirstName and customerLastName joined by a space and trimmed.
func (m *Message) CustomerName() string {
	first := m.field(fCustomerFirstName).str()
	last := m.field(fCustomerLastName).str()
	return strings.TrimSpace(strings.TrimSpace(first) + " " + strings.TrimSpace(last))
}

// TimestampMillis returns header.timestamp as epoch milliseconds, accepting an integer, a digit string
// or an RFC 3339 string; ok is false when it is absent or unreadable.
func (m *Message) TimestampMillis() (ms int64, ok bool) {
	r := m.field(fTimestamp)
	if n, ok := r.integer(); ok && n >= 0 {
		return n, true
	}
	if n, ok := r.digits(); ok {
		return n, true
	}
	if t, ok := parseRFC3339(r); ok && t.UnixMilli() >= 0 {
		return t.UnixMilli(), true
	}
	return 0, false
}

func parseRFC3339(r ref) (time.Time, bool) {
	if !r.is(kindString) {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, r.str())
	return t, err == nil
}
