package ingress

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestIdleAndUnauthenticatedConnectionsDoNotHoldTheConnectionLimit: with ingress.maxConnections held by
// keep-alive connections left idle after a 404, connections that never send a byte and 401s whose bodies
// keep coming, a valid token's request on a new connection is still answered within a couple of seconds.
func TestIdleAndUnauthenticatedConnectionsDoNotHoldTheConnectionLimit(t *testing.T) {
	_, path := tokensFile(t, "good\n")
	cfg := serverConfig()
	cfg.Ingress.TokensFile = path
	cfg.Ingress.MaxConnections = 8
	srv, err := NewServer(cfg, &recorder{}, nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	addr := <-srv.Addr()
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
		cancel()
		<-done
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		return c
	}
	for range 3 { // idle keep-alive after a 404
		c := dial()
		_, _ = io.WriteString(c, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET /x: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	for range 2 { // a 401 whose body keeps coming
		c := dial()
		_, _ = io.WriteString(c, "POST /cim-messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n"+
			"Content-Type: application/json\r\nContent-Length: 8000000\r\n\r\n{")
		go func() {
			for range 40 {
				if _, err := c.Write([]byte(strings.Repeat(" ", 100))); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}
	for range 3 { // silent
		dial()
	}
	time.Sleep(200 * time.Millisecond) // every one of them accepted or queued before the valid request
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 3 {
		start := time.Now()
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/cim-messages", strings.NewReader(msgFor("v-"+string(rune('a'+i)), "web", "x")))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer good")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("valid request %d after %v: %v (idle or unauthenticated connections hold ingress.maxConnections)", i, time.Since(start), err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("valid request %d: %d", i, resp.StatusCode)
		}
	}
}
