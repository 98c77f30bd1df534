package cim

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestStringScan puts each kind of special byte at every offset of strings, and checks what Decode makes of them against encoding/json and the bytes of the decoded value.
func TestStringScan(t *testing.T) {
	for n := 0; n < 20; n++ {
		for at := 0; at <= n; at++ {
			for _, special := range []string{`\"`, `\\`, `\n`, `\u00e9`, "\x01", "\x1f", `"`, `é`} {
				text := strings.Repeat("a", at) + special + strings.Repeat("b", n-at)
				data := []byte(`{"k":"` + text + `","e":1}`)
				m, err := Decode(data)
				if (err == nil) != json.Valid(data) {
					t.Fatalf("%q: Decode error %v, json.Valid %v", data, err, json.Valid(data))
				}
				if err != nil {
					continue
				}
				var want map[string]any
				if err := json.Unmarshal(data, &want); err != nil {
					t.Fatal(err)
				}
				if got, _ := m.String("k"); got != want["k"] {
					t.Fatalf("%q: k = %q, want %q", data, got, want["k"])
				}
				if !m.Has("e") {
					t.Fatalf("%q: the member after the string is lost", data)
				}
			}
		}
	}
}
