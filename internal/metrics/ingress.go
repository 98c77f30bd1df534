package metrics

import (
	"strconv"
	"time"
)

// IngressRoutes are the values of the route label ("other" for any other path).
var IngressRoutes = []string{"/cim-messages", "/ccm/message/receive", "other"}

// IngressRequest implements ingress.Observer.
func (m *Metrics) IngressRequest(route string, code int, took time.Duration) {
	m.ingressRequests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.ingressDuration.WithLabelValues(route).Observe(took.Seconds())
}

// IngressInFlight implements ingress.Observer.
func (m *Metrics) IngressInFlight(delta int) { m.ingressInFlight.Add(float64(delta)) }
