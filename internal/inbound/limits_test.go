package inbound

import (
	"strings"
	"testing"

	"github.com/cimstream/cimstream/pkg/cim"
)

// Stage 1 bounds identifying strings with the configured inbound.maxIdBytes, and with the default
// when it is not set: over it the record is rejected too_long at the field's path.
func TestNormalizerBoundsIdentifyingStrings(t *testing.T) {
	msg := func(customer string) string {
		return `{"header":{"sender":{"id":"w","type":"CONNECTOR","senderName":"W"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"` +
			customer + `"}},"body":{"type":"PLAIN","markdownText":"hi"}}`
	}
	for _, tc := range []struct {
		configured, limit int
	}{{0, cim.DefaultMaxIDBytes}, {64, 64}, {2048, 2048}} {
		n := NewNormalizer(testTopics, 1<<20, nil).WithMaxIDBytes(tc.configured)
		only(t, n.Process(rec(1, "k", msg(strings.Repeat("c", tc.limit)))))
		r := n.Process(rec(2, "k", msg(strings.Repeat("c", tc.limit+1))))
		if len(r.Reject) != 1 || r.Reject[0].Code != cim.CodeTooLong || r.Reject[0].Path != "header.channelData.channelCustomerIdentifier" {
			t.Fatalf("maxIdBytes %d: one byte over must be too_long at the path, got %v", tc.configured, r.Reject)
		}
	}
	if vs := CheckLimits([]byte(msg(strings.Repeat("c", 65))), cim.Limits{MaxIDBytes: 64}); len(vs) != 1 || vs[0].Code != cim.CodeTooLong {
		t.Fatalf("CheckLimits applies the configured bound: %v", vs)
	}
}
