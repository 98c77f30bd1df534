package config

import (
	"strings"
	"testing"
)

// inbound.maxIdBytes: 1 KiB by default, settable by file, environment or --set, refused outside the
// range the session state's byte cap can hold.
func TestMaxIDBytes(t *testing.T) {
	if n := Default().Inbound.MaxIDBytes; n != 1024 {
		t.Fatalf("default inbound.maxIdBytes = %d, want 1024", n)
	}
	cfg, err := Load("", []string{"CIMSTREAM_INBOUND_MAX_ID_BYTES=512"}, nil)
	if err != nil || cfg.Inbound.MaxIDBytes != 512 {
		t.Fatalf("from the environment: %d, %v", cfg.Inbound.MaxIDBytes, err)
	}
	for _, tc := range []struct {
		value string
		ok    bool
	}{{"64", true}, {"2048", true}, {"63", false}, {"2049", false}, {"0", false}} {
		_, err := Load("", nil, []string{"inbound.maxIdBytes=" + tc.value})
		if (err == nil) != tc.ok {
			t.Errorf("inbound.maxIdBytes=%s: %v", tc.value, err)
		}
		if err != nil && !strings.Contains(err.Error(), "inbound.maxIdBytes") {
			t.Errorf("the error must name the key: %v", err)
		}
	}
}
