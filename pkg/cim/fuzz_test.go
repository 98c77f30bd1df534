package cim_test

import (
	"encoding/json"
	"testing"

	"github.com/cimstream/cimstream/pkg/cim"
)

// FuzzDecodeValidate feeds arbitrary bytes through decode, validation in both directions and an
// encode with edits: none may panic, a decoded message must be valid JSON to encoding/json too, and
// edits must give valid JSON.
func FuzzDecodeValidate(f *testing.F) {
	for _, c := range loadCorpus(f) {
		f.Add(c.bytes())
	}
	for _, s := range []string{``, `{`, `{"a":"\ud800"}`, `{"header":{"sender":{"type":"\u0041GENT"}}}`, "{\"\xff\":1}", `[[[[[[]]]]]]`, `{"a":-0.0e+00}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := cim.DecodeLimits(data, cim.Limits{MaxBytes: 1 << 16, MaxDepth: 32})
		if err != nil {
			if _, ok := err.(*cim.DecodeError); !ok {
				t.Fatalf("decode error of type %T", err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("decoded input that encoding/json rejects: %q", data)
		}
		for _, dir := range []cim.Direction{cim.Inbound, cim.Outbound} {
			for _, v := range cim.Validate(m, dir) {
				if v.Code == "" || v.Message == "" {
					t.Fatalf("violation without code or message: %+v", v)
				}
			}
		}
		_ = cim.UnknownIntent(m)
		_, _ = m.TimestampMillis()
		if m.Has("header") {
			out, err := m.Encode(cim.Set(cim.StringValue(m.ID()), "id"), cim.Set(cim.StringValue("c"), "header", "conversationId"))
			if err == nil && !json.Valid(out) {
				t.Fatalf("edit produced invalid JSON: %s", out)
			}
		}
	})
}
