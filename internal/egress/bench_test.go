package egress

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/retry"
	"github.com/cimstream/cimstream/internal/stream"
)

// BenchmarkDeliver202: one partition's scheduler, signing and POSTing to a local connector answering 202,
// 5,000 customers, no broker: the egress's own cost per message beside the HTTP round trip.
func BenchmarkDeliver202(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) }))
	defer srv.Close()
	d := &deliverer{channel: "web", post: NewHTTPPoster(srv.URL, []byte("secret"), 10*time.Second, 32),
		retry: RetryPolicy{MinBackoff: time.Second, MaxBackoff: time.Second, Deadline: time.Minute},
		slots: make(chan struct{}, 32), obs: nopObserver{}, now: time.Now, sleep: retry.Sleep}
	k := newKeyed(1000)
	var settled atomic.Int64
	k.deliver = d.deliver
	k.result = outcome{notifications: "n"}.result
	k.settled = func(stream.Record, Answer, time.Duration) { settled.Add(1) }
	settle := func(_ stream.Record, res stream.Result, written func()) {
		if len(res.Outputs) != 0 || len(res.Reject) != 0 {
			b.Fatal("a 202 writes nothing")
		}
		written()
	}
	value := []byte(fmt.Sprintf(`{"id":"m","header":{"channelData":{"channelCustomerIdentifier":"c"}},"body":{"type":"PLAIN","markdownText":%q}}`, make([]byte, 900)))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k.Admit(ctx)
		k.Add(ctx, stream.Record{Topic: "t", Offset: int64(i), Key: []byte(fmt.Sprint("cust-", i%5000)), Value: value}, settle)
	}
	for settled.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
}
