package ingress

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"
)

// evictGrace is how long a connection may go without showing a valid token before a new connection that
// finds the limit reached takes its place: long enough for a client that connected to send its headers,
// short enough that silent or trickling connections cannot hold the limit against valid ones.
const evictGrace = 500 * time.Millisecond

// limitListener keeps at most max connections open at once (file descriptors and the memory of each) without
// letting connections that do no authenticated work hold that limit. A connection that finds it reached
// closes, to take its place, an idle keep-alive connection, else the oldest connection without an
// authenticated request (silent, trickling its headers, being answered 401/404 or drained) once it had
// evictGrace. Only requests past auth are never cut: while they hold every slot, the new connection waits
// (accepted, so the accept queue behind it waits too), as a plain limit would.
//
// There is deliberately no per-address cap: connectors reach the ingress through load balancers and NAT,
// so many tenants share an address, and a cap per address would let one of them crowd out the others.
// A per-address limit belongs to the load balancer in front.
type limitListener struct {
	net.Listener
	max       int
	now       func() time.Time
	done      chan struct{}
	closeOnce sync.Once

	mu      sync.Mutex
	conns   map[*limitConn]struct{} // open
	changed chan struct{}           // closed, and replaced, when a slot frees or a connection goes idle
}

type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
	// Guarded by l.mu.
	state  http.ConnState
	since  time.Time // when it was accepted or last changed state
	authed int       // requests on it past auth and not yet answered (HTTP/2: several)
}

func newLimitListener(l net.Listener, n int) *limitListener {
	return &limitListener{Listener: l, max: max(1, n), now: time.Now, done: make(chan struct{}),
		conns: map[*limitConn]struct{}{}, changed: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	for {
		l.mu.Lock()
		if len(l.conns) < l.max {
			lc := &limitConn{Conn: c, l: l, state: http.StateNew, since: l.now()}
			l.conns[lc] = struct{}{}
			l.mu.Unlock()
			return lc, nil
		}
		victim, wait := l.victim()
		changed := l.changed
		l.mu.Unlock()
		if victim != nil {
			_ = victim.Close() // frees its slot at once; its server goroutine sees the error and ends
			continue
		}
		var timer <-chan time.Time // nil when no connection is within its grace
		if wait > 0 {
			timer = time.After(wait) // unstopped, it is collected once unreferenced (Go 1.23)
		}
		select {
		case <-changed:
		case <-timer:
		case <-l.done:
			_ = c.Close()
			return nil, net.ErrClosed
		}
	}
}

// victim is the connection to close for a new one, or how long until one without auth is past its grace
// (0: none is; wait for a change). l.mu is held.
func (l *limitListener) victim() (*limitConn, time.Duration) {
	now := l.now()
	var idle, unauthed *limitConn
	var wait time.Duration
	for c := range l.conns {
		switch {
		case c.state == http.StateIdle:
			if idle == nil || c.since.Before(idle.since) {
				idle = c
			}
		case c.authed == 0:
			if left := evictGrace - now.Sub(c.since); left > 0 {
				if wait == 0 || left < wait {
					wait = left
				}
			} else if unauthed == nil || c.since.Before(unauthed.since) {
				unauthed = c
			}
		}
	}
	if idle != nil {
		return idle, 0
	}
	if unauthed != nil {
		return unauthed, 0
	}
	return nil, wait
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// broadcast wakes an Accept waiting for room; l.mu is held.
func (l *limitListener) broadcast() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// connState is the http.Server's ConnState hook: a connection starting a request has evictGrace from then
// to show a token.
func (l *limitListener) connState(c net.Conn, s http.ConnState) {
	lc := asLimitConn(c)
	if lc == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lc.state, lc.since = s, l.now()
	if s == http.StateIdle {
		l.broadcast()
	}
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.broadcast()
		c.l.mu.Unlock()
	})
	return err
}

func asLimitConn(c net.Conn) *limitConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	lc, _ := c.(*limitConn)
	return lc
}

type connKey struct{}

// connContext is the http.Server's ConnContext hook: the handler finds the connection of its request.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if lc := asLimitConn(c); lc != nil {
		return context.WithValue(ctx, connKey{}, lc)
	}
	return ctx
}

// authenticated counts a request past auth on the connection of ctx (delta 1: it is not to be closed for a
// new connection) and its answer written (delta -1: a drain after it may be cut).
func authenticated(ctx context.Context, delta int) {
	lc, _ := ctx.Value(connKey{}).(*limitConn)
	if lc == nil {
		return
	}
	lc.l.mu.Lock()
	defer lc.l.mu.Unlock()
	lc.authed += delta
	if lc.authed == 0 {
		lc.since = lc.l.now()
		lc.l.broadcast()
	}
}
