package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/cimstream/cimstream/internal/config"
)

// RestoreFigure is how one instance took up session partitions at one step.
type RestoreFigure struct {
	Step       string  `json:"step"`
	Instance   string  `json:"instance"`
	From       string  `json:"from"` // "beginning" (replayed) or "kept" (caught up from the last offset applied)
	Partitions int     `json:"partitions"`
	Records    int     `json:"records"`
	Seconds    float64 `json:"seconds"` // the slowest partition's
}

// restoreLine is one "sessions restored" / "sessions kept" log line of an instance.
type restoreLine struct {
	Msg     string  `json:"msg"`
	Records int     `json:"records"`
	Took    float64 `json:"took"`
}

// watched is a running instance whose restore log lines are collected.
type watched struct {
	mu    sync.Mutex
	lines []restoreLine
	stop  func()
}

// since returns the lines after the first n.
func (w *watched) since(n int) []restoreLine {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]restoreLine(nil), w.lines[min(n, len(w.lines)):]...)
}

func (w *watched) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.lines)
}

// startWatched runs the binary on cfg at info level and collects its restore log lines (JSON logs).
func startWatched(cfg config.Config) (*watched, error) {
	cfg.Log.Level, cfg.Log.Format = "info", "json"
	logs, logw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	_, stop, err := startCimstream(cfg, "127.0.0.1:0", logw)
	logw.Close() // the process has its own copy: logs ends when it exits
	if err != nil {
		logs.Close()
		return nil, err
	}
	w := &watched{}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(logs)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var l restoreLine
			if json.Unmarshal(sc.Bytes(), &l) == nil && (l.Msg == "sessions restored" || l.Msg == "sessions kept") {
				w.mu.Lock()
				w.lines = append(w.lines, l)
				w.mu.Unlock()
			}
		}
	}()
	w.stop = func() { stop(); <-scanned; logs.Close() }
	return w, nil
}

// waitLines waits (at most limit) until w logged at least n restore lines in all.
func waitLines(w *watched, n int, limit time.Duration) error {
	for deadline := time.Now().Add(limit); w.count() < n; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d partition restores logged within %v", w.count(), n, limit)
		}
	}
	return nil
}

// summarize turns restore lines into one figure per kind (replayed, kept).
func summarize(step, instance string, lines []restoreLine) []RestoreFigure {
	var out []RestoreFigure
	for _, kind := range []struct{ msg, from string }{{"sessions restored", "beginning"}, {"sessions kept", "kept"}} {
		f := RestoreFigure{Step: step, Instance: instance, From: kind.from}
		for _, l := range lines {
			if l.Msg == kind.msg {
				f.Partitions++
				f.Records += l.Records
				f.Seconds = max(f.Seconds, l.Took)
			}
		}
		if f.Partitions > 0 {
			out = append(out, f)
		}
	}
	return out
}

// restoreBench: cfg's changelog holds the keyed run's sessions. The first instance starts and restores
// every partition; a second joins, and each logs how it took up its half.
func restoreBench(cfg config.Config) ([]RestoreFigure, error) {
	partitions := cfg.Topics.Partitions
	first, err := startWatched(cfg)
	if err != nil {
		return nil, err
	}
	defer first.stop()
	if err := waitLines(first, partitions, 2*time.Minute); err != nil {
		return nil, fmt.Errorf("first instance: %w", err)
	}
	time.Sleep(2 * time.Second) // settled: committed, nothing in flight
	out := summarize("start", "first", first.since(0))
	second, err := startWatched(cfg)
	if err != nil {
		return nil, err
	}
	defer second.stop()
	half := partitions / 2
	if err := waitLines(second, partitions-half, 2*time.Minute); err != nil {
		return nil, fmt.Errorf("second instance: %w", err)
	}
	if err := waitLines(first, partitions+half, time.Minute); err != nil {
		return nil, fmt.Errorf("first instance after the rebalance: %w", err)
	}
	out = append(out, summarize("second joins", "first", first.since(partitions))...)
	out = append(out, summarize("second joins", "second", second.since(0))...)
	return out, nil
}
