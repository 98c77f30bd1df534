package cim_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cimstream/cimstream/pkg/cim"
)

// TestViolationOfAnyError: the violation of a decode error is found through wrapping, and an error that
// is no DecodeError gives a malformed violation instead of a panic (an unchecked err.(*cim.DecodeError)
// did both wrong).
func TestViolationOfAnyError(t *testing.T) {
	_, err := cim.Decode([]byte(`[1]`))
	if err == nil {
		t.Fatal("an array decoded as a message")
	}
	want := cim.ViolationOf(err)
	if want.Code != cim.CodeMalformed || want.Message == "" {
		t.Fatalf("violation of the decode error itself: %+v", want)
	}
	if got := cim.ViolationOf(fmt.Errorf("reading the record: %w", err)); got != want {
		t.Errorf("wrapped decode error: %+v, want %+v", got, want)
	}
	if got := cim.ViolationOf(errors.New("connection reset")); got.Code != cim.CodeMalformed || got.Message != "connection reset" {
		t.Errorf("plain error: %+v, want malformed with its text", got)
	}
}

func TestDecodeAndValidate(t *testing.T) {
	m, vs := cim.DecodeAndValidate([]byte(`{"id":1`), cim.Limits{}, cim.Inbound)
	if m != nil || len(vs) != 1 || vs[0].Code != cim.CodeMalformed {
		t.Errorf("undecodable: message %v, violations %v", m, vs)
	}
	m, vs = cim.DecodeAndValidate([]byte(`{}`), cim.Limits{}, cim.Inbound)
	if m == nil || len(vs) == 0 {
		t.Errorf("an empty object: message %v, violations %v; want the message and what it lacks", m, vs)
	}
	if want := cim.Validate(m, cim.Inbound); vs.Error() != want.Error() {
		t.Errorf("violations %v, want Validate's %v", vs, want)
	}
	if _, vs := cim.DecodeAndValidate(make([]byte, 11), cim.Limits{MaxBytes: 10}, cim.Outbound); len(vs) != 1 || vs[0].Code != cim.CodeTooLarge {
		t.Errorf("over the limit: %v", vs)
	}
}
