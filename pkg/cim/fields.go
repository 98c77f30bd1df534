package cim

// field names a member that Validate, the accessors and the edits of the inbound pipeline read on
// every message. Their node indexes are found once per decode (Message.fields), because each of those
// reads otherwise walks the members of every object on its path: measured, those walks were 16% of
// the inbound pipeline's CPU per message.
type field uint8

const (
	fID field = iota
	fHeader
	fBody

	fSender // header members
	fChannelData
	fChannelSessionID
	fConversationID
	fCustomer
	fTimestamp
	fIntent
	fOriginalMessageID
	fStamps
	fEntities
	fLanguage
	fSecurityInfo
	fSchedulingMetaData
	fRoomID
	fProviderMessageID

	fSenderID // header.sender members
	fSenderType
	fSenderName
	fAdditionalDetail

	fServiceIdentifier // header.channelData members
	fChannelCustomerIdentifier
	fCustomerFirstName
	fCustomerLastName
	fRequestPriority
	fAdditionalAttributes

	fBodyType // body members
	fMarkdownText

	numFields
)

// object names an object whose members are indexed: the root and the objects of the fields below.
type object uint8

const (
	objRoot object = iota
	objHeader
	objSender
	objChannelData
	objBody
	numObjects
)

// objectField is the field holding each indexed object (the root has none).
var objectField = [numObjects]field{objHeader: fHeader, objSender: fSender, objChannelData: fChannelData, objBody: fBody}

// maxFieldKey is the length of the longest key of a field ("channelCustomerIdentifier"); get converts
// shorter keys to bytes on the stack.
const maxFieldKey = 25

// memberField maps a key of an indexed object to its field. A switch on string(key) does not allocate.
func memberField(o object, key []byte) (field, bool) {
	switch o {
	case objRoot:
		return rootField(key)
	case objHeader:
		return headerField(key)
	case objSender:
		return senderField(key)
	case objChannelData:
		return channelDataField(key)
	case objBody:
		return bodyField(key)
	}
	return 0, false
}

func rootField(key []byte) (field, bool) {
	switch string(key) {
	case "id":
		return fID, true
	case "header":
		return fHeader, true
	case "body":
		return fBody, true
	}
	return 0, false
}

func headerField(key []byte) (field, bool) {
	switch string(key) {
	case "sender":
		return fSender, true
	case "channelData":
		return fChannelData, true
	case "channelSessionId":
		return fChannelSessionID, true
	case "conversationId":
		return fConversationID, true
	case "customer":
		return fCustomer, true
	case "timestamp":
		return fTimestamp, true
	case "intent":
		return fIntent, true
	case "originalMessageId":
		return fOriginalMessageID, true
	case "stamps":
		return fStamps, true
	case "entities":
		return fEntities, true
	case "language":
		return fLanguage, true
	case "securityInfo":
		return fSecurityInfo, true
	case "schedulingMetaData":
		return fSchedulingMetaData, true
	case "roomId":
		return fRoomID, true
	case "providerMessageId":
		return fProviderMessageID, true
	}
	return 0, false
}

func senderField(key []byte) (field, bool) {
	switch string(key) {
	case "id":
		return fSenderID, true
	case "type":
		return fSenderType, true
	case "senderName":
		return fSenderName, true
	case "additionalDetail":
		return fAdditionalDetail, true
	}
	return 0, false
}

func channelDataField(key []byte) (field, bool) {
	switch string(key) {
	case "serviceIdentifier":
		return fServiceIdentifier, true
	case "channelCustomerIdentifier":
		return fChannelCustomerIdentifier, true
	case "customerFirstName":
		return fCustomerFirstName, true
	case "customerLastName":
		return fCustomerLastName, true
	case "requestPriority":
		return fRequestPriority, true
	case "additionalAttributes":
		return fAdditionalAttributes, true
	}
	return 0, false
}

func bodyField(key []byte) (field, bool) {
	switch string(key) {
	case "type":
		return fBodyType, true
	case "markdownText":
		return fMarkdownText, true
	}
	return 0, false
}

// fieldIndex holds the node index of each field (-1: absent, or its parent is not an object).
type fieldIndex [numFields]int32

// index fills m.fields in one pass over the members of each indexed object. It runs after the node
// tree is complete (Decode, Edited) and never on a read, so that concurrent reads stay safe.
func (m *Message) index() {
	for i := range m.fields {
		m.fields[i] = -1
	}
	m.indexMembers(objRoot, m.root)
	for o := objHeader; o < numObjects; o++ {
		m.indexMembers(o, m.fields[objectField[o]])
	}
	m.indexed = true
}

// indexMembers records the members of one object; a repeated key keeps its last member, as get does.
// Objects are indexed parents first (root, header, sender, channelData, body), so obj is final here.
func (m *Message) indexMembers(o object, obj int32) {
	if obj < 0 || m.nodes[obj].kind != kindObject {
		return
	}
	for c := m.nodes[obj].first; c >= 0; c = m.nodes[c].next {
		if f, ok := memberField(o, m.keyOf(c)); ok {
			m.fields[f] = c
		}
	}
}

// keyOf returns a member's key, unescaped (an escaped key costs an allocation; they are rare).
func (m *Message) keyOf(c int32) []byte {
	n := &m.nodes[c]
	key := m.raw[n.keyStart:n.keyEnd]
	if n.keyEscaped {
		return []byte(unescape(key))
	}
	return key
}

// indexedObject tells which indexed object the node obj is, if any.
func (m *Message) indexedObject(obj int32) (object, bool) {
	if !m.indexed {
		return 0, false
	}
	if obj == m.root {
		return objRoot, true
	}
	for o := objHeader; o < numObjects; o++ {
		if m.fields[objectField[o]] == obj {
			return o, true
		}
	}
	return 0, false
}

// field returns the value of a field.
func (m *Message) field(f field) ref { return ref{m, m.fields[f]} }
