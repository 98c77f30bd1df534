package cim_test

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/cimstream/cimstream/pkg/cim"
)

func loadBench(b *testing.B, name string) []byte {
	b.Helper()
	data, err := os.ReadFile("testdata/bench/" + name)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

func benchDecodeValidate(b *testing.B, name string, dir cim.Direction) {
	data := loadBench(b, name)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := cim.Decode(data)
		if err != nil {
			b.Fatal(err)
		}
		if vs := cim.Validate(m, dir); len(vs) != 0 {
			b.Fatal(vs)
		}
	}
}

// BenchmarkDecodeValidatePlain1K is the typical case: a 1 KiB inbound PLAIN message from a web connector.
func BenchmarkDecodeValidatePlain1K(b *testing.B) {
	benchDecodeValidate(b, "plain-1k.json", cim.Inbound)
}

func BenchmarkDecodeValidateImage(b *testing.B) { benchDecodeValidate(b, "image.json", cim.Inbound) }

func BenchmarkDecodeValidateButton(b *testing.B) { benchDecodeValidate(b, "button.json", cim.Outbound) }

func BenchmarkEncodeWithEdits(b *testing.B) {
	data := loadBench(b, "plain-1k.json")
	m, err := cim.Decode(data)
	if err != nil {
		b.Fatal(err)
	}
	edits := []cim.Edit{
		cim.Set(cim.StringValue("0d6f1a9e-5a63-5c4e-9a43-1f4f0b1e2d3c"), "header", "channelSessionId"),
		cim.Set(cim.StringValue("6a1f3b0c-1d2e-5f60-8a9b-0c1d2e3f4a5b"), "header", "conversationId"),
		cim.Set(cim.IntValue(1732400000000), "header", "timestamp"),
	}
	buf := make([]byte, 0, 2048)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		out, err := m.AppendEncoded(buf[:0], edits...)
		if err != nil {
			b.Fatal(err)
		}
		buf = out
	}
}

// Baselines measured in the same run, so figures can be read as ratios: encoding/json's syntax check
// alone, and decoding into map[string]any (what a generic validator would start from).
func BenchmarkBaselineJSONValid(b *testing.B) {
	data := loadBench(b, "plain-1k.json")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if !json.Valid(data) {
			b.Fatal("invalid")
		}
	}
}

func BenchmarkBaselineJSONUnmarshalMap(b *testing.B) {
	data := loadBench(b, "plain-1k.json")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			b.Fatal(err)
		}
	}
}
