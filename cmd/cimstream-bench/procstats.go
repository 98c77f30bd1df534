package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat (100 on Linux).
const clockTicks = 100

// cpuSeconds is the user + system CPU time process pid has used (0 when it cannot be read).
func cpuSeconds(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces and parentheses: the fields start after the last ')'.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / clockTicks
}

// brokerPid finds the local process listening on the first broker's port (the broker's java process):
// the listening socket's inode in /proc/net/tcp, then the process holding it. 0 when not found.
func brokerPid(brokers string) int {
	_, port, err := net.SplitHostPort(strings.Split(brokers, ",")[0])
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(port)
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		for _, inode := range listeningInodes(f, p) {
			inodes["socket:["+inode+"]"] = true
		}
	}
	if len(inodes) == 0 {
		return 0
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range procs {
		if link, err := os.Readlink(fd); err == nil && inodes[link] {
			pid, _ := strconv.Atoi(strings.Split(fd, "/")[2])
			return pid
		}
	}
	return 0
}

// listeningInodes returns the inodes of the sockets in a /proc/net/tcp table listening on port.
func listeningInodes(table string, port int) []string {
	f, err := os.Open(table)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 10 || fs[3] != "0A" { // 0A: LISTEN
			continue
		}
		_, hexPort, ok := strings.Cut(fs[1], ":")
		if p, err := strconv.ParseInt(hexPort, 16, 32); ok && err == nil && int(p) == port {
			out = append(out, fs[9])
		}
	}
	return out
}

// freeAddr is a 127.0.0.1 address with a port free now, for an instance's admin server.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// kafkaRequests reads cimstream_kafka_requests_total by API from an instance's /metrics, waiting up to
// limit for the admin server to answer.
func kafkaRequests(addr string, limit time.Duration) (map[string]float64, error) {
	deadline := time.Now().Add(limit)
	for {
		out, err := scrapeRequests(addr)
		if err == nil || time.Now().After(deadline) {
			return out, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func scrapeRequests(addr string) (map[string]float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	return parseRequests(bufio.NewScanner(resp.Body))
}

// parseRequests picks the cimstream_kafka_requests_total{api="..."} lines of a text exposition.
func parseRequests(sc *bufio.Scanner) (map[string]float64, error) {
	const name = `cimstream_kafka_requests_total{`
	out := map[string]float64{}
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		_, rest, _ := strings.Cut(line, `api="`)
		api, rest, ok := strings.Cut(rest, `"`)
		fs := strings.Fields(rest)
		if !ok || len(fs) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(fs[len(fs)-1], 64); err == nil {
			out[api] += v
		}
	}
	return out, sc.Err()
}

// perRecords is n (requests, CPU seconds) per unit records: per 1,000 or per 100,000.
func perRecords(n float64, records int, unit float64) float64 {
	if records == 0 {
		return 0
	}
	return n * unit / float64(records)
}

// procKiB sums the kB values of the lines of a /proc file (status, meminfo) named by keys; 0 when
// unreadable.
func procKiB(path string, keys ...string) float64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	kb := 0.0
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && slices.Contains(keys, f[0]) {
			v, _ := strconv.ParseFloat(f[1], 64)
			kb += v
		}
	}
	return kb
}

// rssMiB is the resident memory of process pid (0 when unreadable).
func rssMiB(pid int) float64 { return procKiB(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:") / 1024 }

// dirtyMiB is Dirty + Writeback of /proc/meminfo, in MiB (0 when unreadable).
func dirtyMiB() float64 { return procKiB("/proc/meminfo", "Dirty:", "Writeback:") / 1024 }

// quiesce writes the page cache back (sync) and waits, up to limit, until the broker uses under a third
// of a core over a second: the scenarios before a latency measurement leave hundreds of MiB of dirty
// pages and compacted changelogs to clean, and that work would otherwise land in the measured window.
// It returns how long it took and the dirty page cache before.
func quiesce(limit time.Duration) (took time.Duration, dirtyBefore float64) {
	start := time.Now()
	dirtyBefore = dirtyMiB()
	syscall.Sync()
	for time.Since(start) < limit {
		before := cpuSeconds(broker)
		time.Sleep(time.Second)
		if broker == 0 || cpuSeconds(broker)-before < 0.33 {
			break
		}
	}
	return time.Since(start), dirtyBefore
}
