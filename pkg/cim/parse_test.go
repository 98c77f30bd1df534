package cim

import (
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"
)

func isSpecial(c byte) bool { return c == '"' || c == '\\' || c < 0x20 }

// TestSpecial checks the word test against the byte test: every byte value in every lane, the
// other lanes filled with plain bytes of both halves of the byte range (carries and borrows).
func TestSpecial(t *testing.T) {
	for _, fill := range []byte{'a', ' ', '!', '#', '[', ']', 0x7f, 0x80, 0xc3, 0xff} {
		for lane := 0; lane < 8; lane++ {
			for c := 0; c < 256; c++ {
				var w [8]byte
				for i := range w {
					w[i] = fill
				}
				w[lane] = byte(c)
				if got, want := special(binary.LittleEndian.Uint64(w[:])), isSpecial(byte(c)); got != want {
					t.Fatalf("special(% x) = %v, want %v", w, got, want)
				}
			}
		}
	}
}

// TestStringScan puts each kind of special byte at every offset of strings longer than a word, and
// checks what Decode makes of them against encoding/json and the bytes of the decoded value.
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
