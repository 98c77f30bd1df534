package session

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// plainID is an id of n plain ASCII bytes (no JSON escape), the common shape of long ids.
func plainID(prefix string, i, n int) string {
	s := fmt.Sprint(prefix, i, "-")
	return s + strings.Repeat("x", n-len(s))
}

// BenchmarkApplyLongPlainIds is the per-message cost of a key holding 16 sessions whose ids (carried
// channelSessionId and conversationId, message id, customer) are 1 KiB of plain ASCII: about 100 KB
// encoded, far under the cap: the decision plus the one encoding the changelog
// write needs, as the inbound stage does for every message.
func BenchmarkApplyLongPlainIds(b *testing.B) {
	tb := NewTable(Fixed(30 * time.Minute))
	k := Key(plainID("s", 0, maxID), plainID("c", 0, maxID))
	off := int64(0)
	for i := range 16 {
		off++
		m := at(off, plainID("m", i, maxID), hoursAgo+off)
		m.ChannelSessionID, m.ConversationID = plainID("cs", i, maxID), plainID("cv", i, maxID)
		cd, _ := json.Marshal(map[string]string{"serviceIdentifier": plainID("s", 0, maxID), "channelCustomerIdentifier": plainID("c", 0, maxID)})
		cu, _ := json.Marshal(map[string]string{"id": plainID("u", i, maxID)})
		m.Data = Data{ChannelData: cd, Customer: cu}
		tb.Apply(k, m, 0)
	}
	size := 0
	for b.Loop() {
		off++
		out := tb.Apply(k, at(off, "next", hoursAgo+off), 0)
		size = len(Encode(out.State))
	}
	b.ReportMetric(float64(size), "state-bytes")
}
