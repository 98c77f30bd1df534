package cim_test

import (
	"encoding/json"
	"fmt"

	"github.com/cimstream/cimstream/pkg/cim"
)

func ExampleValidate() {
	data := []byte(`{"header":{"sender":{"id":"wa-1","type":"connector","senderName":"WA"},
		"channelData":{"serviceIdentifier":"41445556677","channelCustomerIdentifier":" "}},
		"body":{"type":"BUTTON","buttonMessageType":"QUICK_REPLIES","buttons":[{"title":"Yes","type":"postback"}]}}`)
	m, err := cim.Decode(data)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, v := range cim.Validate(m, cim.Inbound) {
		fmt.Println(v.Path, v.Code)
	}
	// Output:
	// header.channelData.channelCustomerIdentifier empty
	// body.buttons[0].payload required
}

func ExampleDecode_malformed() {
	_, err := cim.Decode([]byte(`{"header": `))
	fmt.Println(err)
	// Output: malformed: not valid JSON: unexpected end of input at byte 11
}

func ExampleMessage_Encode() {
	m, _ := cim.Decode([]byte(`{"header":{"sender":{"type":"bot"},"x-trace":"abc"},"body":{"type":"PLAIN","markdownText":"hi"}}`))
	out, _ := m.Encode(
		cim.Set(cim.StringValue("BOT"), "header", "sender", "type"),
		cim.Set(cim.StringValue("conv-42"), "header", "conversationId"),
	)
	fmt.Println(string(out))
	// Output: {"header":{"sender":{"type":"BOT"},"x-trace":"abc","conversationId":"conv-42"},"body":{"type":"PLAIN","markdownText":"hi"}}
}

func ExampleEnvelope() {
	msg := cim.Envelope{
		ID: "m-1",
		Header: cim.Header{
			Sender:      cim.Sender{ID: "web-1", Type: "CONNECTOR", SenderName: "WEB"},
			ChannelData: &cim.ChannelData{ServiceIdentifier: "https://shop.example.com", ChannelCustomerIdentifier: "b-7"},
		},
		Body: cim.PlainBody{Type: "PLAIN", MarkdownText: "Hello"},
	}
	data, _ := json.Marshal(msg)
	m, _ := cim.Decode(data)
	fmt.Println(len(cim.Validate(m, cim.Inbound)) == 0)
	// Output: true
}
