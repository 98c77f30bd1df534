package cim

import "encoding/json"

// The types below describe the CIM message for code that builds messages (connectors, tests, cimstream's
// own delivery notifications): marshal them with encoding/json, then Decode and Validate the bytes.
// Reading and editing received messages goes through Message, which keeps unknown fields; these structs
// would drop them.

// Envelope is a whole CIM message. Body holds one of the *Body types below (or any JSON value).
type Envelope struct {
	ID     string `json:"id,omitempty"`
	Header Header `json:"header"`
	Body   any    `json:"body"`
}

// Header is the message header.
type Header struct {
	Sender             Sender          `json:"sender"`
	ChannelData        *ChannelData    `json:"channelData,omitempty"`
	ChannelSessionID   string          `json:"channelSessionId,omitempty"`
	ConversationID     string          `json:"conversationId,omitempty"`
	Customer           *Customer       `json:"customer,omitempty"`
	Intent             string          `json:"intent,omitempty"`
	Entities           map[string]any  `json:"entities,omitempty"`
	Stamps             []string        `json:"stamps,omitempty"`
	Timestamp          int64           `json:"timestamp,omitempty"` // epoch milliseconds
	Language           map[string]any  `json:"language,omitempty"`
	SecurityInfo       map[string]any  `json:"securityInfo,omitempty"`
	SchedulingMetaData map[string]any  `json:"schedulingMetaData,omitempty"`
	RoomID             string          `json:"roomId,omitempty"`
	OriginalMessageID  string          `json:"originalMessageId,omitempty"`
	ProviderMessageID  string          `json:"providerMessageId,omitempty"`
	AdditionalData     json.RawMessage `json:"additionalData,omitempty"`
}

// Sender is who sent the message; Type is one of SenderTypes.
type Sender struct {
	ID               string         `json:"id"`
	Type             string         `json:"type"`
	SenderName       string         `json:"senderName"`
	AdditionalDetail map[string]any `json:"additionalDetail,omitempty"`
}

// ChannelData identifies the customer on a channel: who (channelCustomerIdentifier) reached which
// channel (serviceIdentifier).
type ChannelData struct {
	ChannelCustomerIdentifier string      `json:"channelCustomerIdentifier"`
	ServiceIdentifier         string      `json:"serviceIdentifier"`
	RequestPriority           int         `json:"requestPriority,omitempty"`
	CustomerFirstName         string      `json:"customerFirstName,omitempty"`
	CustomerLastName          string      `json:"customerLastName,omitempty"`
	AdditionalAttributes      []Attribute `json:"additionalAttributes,omitempty"`
}

// Attribute is channel-specific key/value data.
type Attribute struct {
	Key   string `json:"key"`
	Type  string `json:"type,omitempty"`
	Value any    `json:"value,omitempty"`
}

// Customer is the customer record; the id travels as "id" (docs) or "_id" (the Java model).
type Customer struct {
	ID          string `json:"id,omitempty"`
	MongoID     string `json:"_id,omitempty"`
	FirstName   string `json:"firstName,omitempty"`
	IsAnonymous bool   `json:"isAnonymous"`
}

// PlainBody is a text message.
type PlainBody struct {
	Type         string `json:"type"` // PLAIN
	MarkdownText string `json:"markdownText"`
}

// Attachment is a media file referenced by URL.
type Attachment struct {
	MediaURL  string `json:"mediaUrl"`
	MimeType  string `json:"mimeType,omitempty"`
	Size      int64  `json:"size,omitempty"`
	Thumbnail string `json:"thumbnail,omitempty"`
	MediaName string `json:"mediaName,omitempty"`
}

// MediaBody is IMAGE, VIDEO, AUDIO, FILE or MULTIMEDIA.
type MediaBody struct {
	Type         string      `json:"type"`
	Caption      string      `json:"caption,omitempty"`
	Attachment   *Attachment `json:"attachment"`
	MarkdownText string      `json:"markdownText,omitempty"`
}

// StickerBody is a sticker, by URL.
type StickerBody struct {
	Type      string `json:"type"` // STICKER
	MediaURL  string `json:"mediaUrl"`
	StickerID string `json:"stickerId,omitempty"`
}

// LocationBody is a point on the map.
type LocationBody struct {
	Type     string   `json:"type"` // LOCATION
	Location Location `json:"location"`
}

// Location is a coordinate pair in degrees.
type Location struct {
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
}

// ContactBody shares contact cards.
type ContactBody struct {
	Type     string    `json:"type"` // CONTACT
	Contacts []Contact `json:"contacts"`
}

// Contact is one contact card.
type Contact struct {
	Name   ContactName    `json:"name"`
	Phones []ContactPhone `json:"phones,omitempty"`
}

// ContactName is a contact's name.
type ContactName struct {
	FormattedName string `json:"formattedName"`
}

// ContactPhone is a contact's phone number.
type ContactPhone struct {
	Phone string `json:"phone"`
}

// URLBody is a link.
type URLBody struct {
	Type         string `json:"type"` // URL
	MediaURL     string `json:"mediaUrl"`
	MarkdownText string `json:"markdownText,omitempty"`
}

// ButtonBody offers buttons or quick replies.
type ButtonBody struct {
	Type              string   `json:"type"`              // BUTTON
	ButtonMessageType string   `json:"buttonMessageType"` // BUTTON or QUICK_REPLIES
	Buttons           []Button `json:"buttons"`
	MarkdownText      string   `json:"markdownText,omitempty"`
}

// Button is one button.
type Button struct {
	Title   string `json:"title"`
	Type    string `json:"type"`
	Payload string `json:"payload"`
}

// WrapupBody closes an interaction with categories.
type WrapupBody struct {
	Type    string   `json:"type"` // WRAPUP
	Wrapups []Wrapup `json:"wrapups"`
	Note    string   `json:"note,omitempty"`
}

// Wrapup is one wrap-up category and value.
type Wrapup struct {
	CategoryName string `json:"categoryName"`
	Value        string `json:"value"`
}

// DeliveryNotificationBody reports the fate of a message: Status is one of DeliveryStatuses.
type DeliveryNotificationBody struct {
	Type         string `json:"type"` // DELIVERYNOTIFICATION
	MessageID    string `json:"messageId"`
	Status       string `json:"status"`
	ReasonCode   int    `json:"reasonCode"`
	MarkdownText string `json:"markdownText,omitempty"`
}

// ActionBody asks the system to act (a bot's FIND_AGENT, for example).
type ActionBody struct {
	Type string         `json:"type"` // ACTION
	Name string         `json:"name"`
	Data map[string]any `json:"data"`
}

// CarouselBody is a row of cards.
type CarouselBody struct {
	Type                string            `json:"type"`                // CAROUSEL
	CarouselMessageType string            `json:"carouselMessageType"` // MEDIA or GENERIC_RICH_MEDIA
	Elements            []CarouselElement `json:"elements"`
}

// CarouselElement is one card.
type CarouselElement struct {
	Text    string   `json:"text,omitempty"`
	URL     string   `json:"url,omitempty"`
	Buttons []Button `json:"buttons,omitempty"`
}

// TemplateBody is a pre-approved template (WhatsApp and others).
type TemplateBody struct {
	Type       string           `json:"type"` // TEMPLATE
	Namespace  string           `json:"namespace"`
	Name       string           `json:"name"`
	Language   TemplateLanguage `json:"language"`
	Components []any            `json:"components,omitempty"`
}

// TemplateLanguage is a template's language.
type TemplateLanguage struct {
	Code   string `json:"code"`
	Policy string `json:"policy,omitempty"`
}

// CustomBody carries user-defined JSON.
type CustomBody struct {
	Type     string `json:"type"` // CUSTOM
	JSONNode any    `json:"jsonNode,omitempty"`
}

// GenericBody is any other type (RECEIPT, VOICE, EMAIL, NOTIFICATION, DELETEDNOTIFICATION, COMMENT):
// Type plus the fields of that type.
type GenericBody map[string]any
