package main

import (
	"bytes"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestDevRunsWithoutExternalBroker: `cimstream dev` brings its own in-process broker; a message sent with
// kcat comes out enriched, and SIGTERM stops it cleanly.
func TestDevRunsWithoutExternalBroker(t *testing.T) {
	bin := buildBinary(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	broker := ln.Addr().String()
	_, port, _ := net.SplitHostPort(broker)
	ln.Close()
	admin := freeAddr(t)
	var stdout, stderr syncBuffer
	cmd := exec.Command(bin, "dev", "--port", port, "--set", "admin.address="+admin, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	waitFor(t, "dev to be ready", 30*time.Second, func() bool {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if !strings.Contains(stdout.String(), "kcat -P -b "+broker) {
		t.Errorf("dev must print how to produce with kcat:\n%s", stdout.String())
	}
	produce := exec.Command("kcat", "-P", "-b", broker, "-t", "cim.inbound.web")
	produce.Stdin = strings.NewReader(`{"header":{"sender":{"id":"w","type":"CONNECTOR","senderName":"W"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"ann"}},"body":{"type":"PLAIN","markdownText":"dev hello"}}` + "\n")
	if out, err := produce.CombinedOutput(); err != nil {
		t.Fatalf("kcat produce: %v %s", err, out)
	}
	waitFor(t, "the message on ccm.inbound", 30*time.Second, func() bool {
		out, _ := exec.Command("kcat", "-C", "-b", broker, "-t", "ccm.inbound", "-e", "-q").Output()
		return strings.Contains(string(out), "dev hello") && strings.Contains(string(out), `"conversationId"`)
	})
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dev exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatal("dev did not stop within 40 s of SIGTERM")
	}
}

// syncBuffer is a bytes.Buffer safe to read while a process writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
