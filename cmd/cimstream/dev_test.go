package main

import (
	"bytes"
	"net"
	"net/http"
	"os"
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
	admin, ingressAddr := freeAddr(t), freeAddr(t)
	var stdout, stderr syncBuffer
	cmd := exec.Command(bin, "dev", "--port", port, "--set", "admin.address="+admin, "--set", "ingress.address="+ingressAddr, "--log-level", "warn")
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
	// The README's examples, as printed, against this broker: inbound, garbage, and the outbound round trip
	// that dev's default channel map makes work.
	commands := readmeKcatCommands(t, broker)
	if len(commands) < 7 {
		t.Fatalf("only %d kcat commands found in the README", len(commands))
	}
	expect := map[string][]string{
		"ccm.inbound":           {`"conversationId"`, "Hello"},
		"cimstream.dlq":         {"not json", "cimstream.error.codes"},
		"cim.outbound.whatsapp": {"Hello Ann, how can I help?"},
		"cim.notifications":     {"reply-1", "ACCEPTED"},
	}
	for _, c := range commands {
		if strings.Contains(c, "kcat -P") {
			if out, err := exec.Command("sh", "-c", c).CombinedOutput(); err != nil {
				t.Fatalf("README command failed: %s\n%v %s", c, err, out)
			}
		}
	}
	// The README's HTTP ingress example, as printed, against dev's ingress: curl answers 202.
	curls := readmeCommands(t, "curl ", map[string]string{"127.0.0.1:8081": ingressAddr})
	posted := 0
	for _, c := range curls {
		if !strings.Contains(c, "/cim-messages") {
			continue
		}
		out, err := exec.Command("sh", "-c", c).CombinedOutput()
		if err != nil || !strings.Contains(string(out), `"status":"ACCEPTED"`) {
			t.Fatalf("README curl: %s\n%v %s", c, err, out)
		}
		posted++
	}
	if posted == 0 {
		t.Fatal("the README has no curl that POSTs to /cim-messages")
	}
	for _, c := range commands {
		if strings.Contains(c, "kcat -P") {
			continue
		}
		topic := topicOf(c)
		if strings.Contains(c, "grep web-http-1") {
			// The message POSTed over HTTP, read enriched from the CCM topic.
			waitFor(t, "the README's HTTP example on "+topic, 30*time.Second, func() bool {
				out, _ := exec.Command("sh", "-c", c).Output()
				return strings.Contains(string(out), `"id":"web-http-1"`) && strings.Contains(string(out), `"channelSessionId"`) &&
					strings.Contains(string(out), `"conversationId"`)
			})
			posted--
			continue
		}
		wants, ok := expect[topic]
		if !ok {
			t.Fatalf("README reads %s; this test does not know what to expect there: %s", topic, c)
		}
		waitFor(t, "the README's "+topic+" example", 30*time.Second, func() bool {
			out, _ := exec.Command("sh", "-c", c).Output()
			for _, w := range wants {
				if !strings.Contains(string(out), w) {
					return false
				}
			}
			return true
		})
		delete(expect, topic)
	}
	if len(expect) > 0 {
		t.Errorf("the README no longer reads %v", expect)
	}
	if posted != 0 {
		t.Errorf("the README's HTTP example is not read back from the CCM topic with kcat (grep web-http-1)")
	}
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

// readmeKcatCommands returns the kcat commands of the README's sh blocks (continuation lines joined), with
// the README's broker address replaced by broker.
func readmeKcatCommands(t *testing.T, broker string) []string {
	t.Helper()
	return readmeCommands(t, "kcat ", map[string]string{"127.0.0.1:9092": broker})
}

// readmeCommands returns the lines of the README's sh blocks (continuation lines joined) that contain word
// and one of the addresses in replace, with those addresses replaced.
func readmeCommands(t *testing.T, word string, replace map[string]string) []string {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	inSh := false
	pending := ""
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "```sh"):
			inSh = true
			continue
		case strings.HasPrefix(line, "```"):
			inSh = false
			continue
		}
		if !inSh {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			pending += strings.TrimSuffix(line, "\\")
			continue
		}
		line = pending + line
		pending = ""
		if !strings.Contains(line, word) {
			continue
		}
		for from, to := range replace {
			if strings.Contains(line, from) {
				out = append(out, strings.ReplaceAll(line, from, to))
				break
			}
		}
	}
	return out
}

// topicOf returns the topic a kcat command names with -t.
func topicOf(command string) string {
	f := strings.Fields(command)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "-t" {
			return f[i+1]
		}
	}
	return ""
}
