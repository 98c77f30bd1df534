package kafkaclient

import (
	"maps"
	"sync"
	"time"
)

// Broker quotas (produce and fetch byte rates on the client id, request-time quotas) are enforced by
// throttling: the broker answers with a throttle time and then holds the connection's next request
// back for that long. Nothing fails; the client slows down. The time every produce and fetch response
// named is added up here, process-wide (per request kind), for the metrics.

var throttles struct {
	sync.Mutex
	totals map[string]ThrottleTotal
}

// ThrottleTotal is what the broker's responses of one request kind said about throttling.
type ThrottleTotal struct {
	// Seconds is the throttle time named by the responses, added up.
	Seconds float64
	// Responses is how many responses named a throttle time above zero.
	Responses int64
}

// Throttled records a response of request kind ("produce", "fetch") that named throttle d.
func Throttled(request string, d time.Duration) {
	if d <= 0 {
		return
	}
	throttles.Lock()
	defer throttles.Unlock()
	if throttles.totals == nil {
		throttles.totals = map[string]ThrottleTotal{}
	}
	t := throttles.totals[request]
	t.Seconds += d.Seconds()
	t.Responses++
	throttles.totals[request] = t
}

// ThrottleTotals returns the totals so far by request kind; "produce" and "fetch" are always present.
func ThrottleTotals() map[string]ThrottleTotal {
	throttles.Lock()
	defer throttles.Unlock()
	out := map[string]ThrottleTotal{"produce": {}, "fetch": {}}
	maps.Copy(out, throttles.totals)
	return out
}
