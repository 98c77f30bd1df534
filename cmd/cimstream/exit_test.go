package main

import (
	"net"
	"strings"
	"testing"
	"time"
)

func TestHelpForAnUnknownTopicIsAUsageError(t *testing.T) {
	for _, args := range [][]string{{"help", "bogus"}, {"help", "topics", "bogus"}} {
		code, _, errOut := runCLI(t, "", args...)
		if code != 2 || !strings.Contains(errOut, "bogus") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
	if code, out, _ := runCLI(t, "", "help", "topics", "check"); code != 0 || !strings.Contains(out, "cimstream topics check [flags]") {
		t.Errorf("help topics check: exit %d\n%s", code, out)
	}
}

// TestStartupAttemptIsCutAtTheDeadline: against a broker address that accepts connections and never
// answers, an attempt would last kafka.requestTimeout; run must still give up at startup.timeout.
func TestStartupAttemptIsCutAtTheDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	done := make(chan struct{})
	var code int
	var errOut string
	start := time.Now()
	go func() {
		defer close(done)
		code, _, errOut = runCLI(t, "", "run", "--brokers", ln.Addr().String(), "--set", "admin.address="+freeAddr(t),
			"--set", "startup.timeout=2s", "--set", "kafka.requestTimeout=60s", "--set", "kafka.dialTimeout=60s", "--log-level", "error")
	}()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("run still waiting 15 s after start with startup.timeout=2s")
	}
	if elapsed := time.Since(start); code != 1 || elapsed > 6*time.Second || !strings.Contains(errOut, "startup.timeout (2s") {
		t.Errorf("exit %d after %v, stderr %q; want 1 soon after 2 s", code, elapsed, errOut)
	}
}
