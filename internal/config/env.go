package config

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// ToolingEnv are CIMSTREAM_* variables read by the project's scripts and tests, not by the configuration;
// they are the only CIMSTREAM_* names besides the keys' that the environment may hold.
var ToolingEnv = []string{
	"CIMSTREAM_REQUIRE_KAFKA",    // tests: fail, not skip, without a broker
	"CIMSTREAM_KAFKA_HOME",       // scripts/kafka.sh: where the Kafka jars are cached
	"CIMSTREAM_ACCOUNTS_FILE",    // fault tests: where the account of messages is written
	"CIMSTREAM_CHAOS_LONG",       // fault tests: the long variants
	"CIMSTREAM_CHAOS_LOG_LEVEL",  // fault tests: the instances' log level
	"CIMSTREAM_TEST_KAFKA_PORT",  // scripts/test.sh: the test broker's port
	"CIMSTREAM_BENCH_KAFKA_PORT", // scripts/bench.sh: the benchmark broker's port
	"CIMSTREAM_FUZZTIME",         // scripts/test.sh: fuzzing time
}

// EnvName is the environment variable that overrides key.
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(camelToSnake(key), ".", "_"))
}

func camelToSnake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' {
			prev := rune(0)
			if i > 0 {
				prev = rune(s[i-1])
			}
			if prev >= 'a' && prev <= 'z' || prev >= '0' && prev <= '9' {
				b.WriteByte('_')
			}
		}
		b.WriteRune(r)
	}
	return b.String()
}

// applyEnv sets the keys named by CIMSTREAM_* variables. A CIMSTREAM_* variable that names no key is an
// error naming the closest one: a misspelt override silently ignored is a production incident. Kubernetes'
// service-link variables are the exception (see isServiceLink).
func applyEnv(cfg *Config, environ []string) error {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			env[k] = v
		}
	}
	known := map[string]bool{}
	for _, name := range ToolingEnv {
		known[name] = true
	}
	var errs []error
	for _, f := range fields(cfg) {
		name := EnvName(f.key)
		known[name] = true
		if v, ok := env[name]; ok {
			if err := setValue(f, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	}
	var unknown []string
	for name, value := range env {
		if !known[name] && !isServiceLink(name, value) {
			unknown = append(unknown, name)
		}
	}
	sort.Strings(unknown)
	if len(unknown) > 0 {
		keys := Keys()
		names := make([]string, len(keys))
		byName := map[string]string{}
		for i, k := range keys {
			names[i] = EnvName(k)
			byName[names[i]] = k
		}
		for _, name := range unknown {
			near := closest(name, names)
			errs = append(errs, fmt.Errorf("environment variable %s is not a configuration key; the closest is %s (%s); `cimstream config keys` lists them all",
				name, near, byName[near]))
		}
	}
	return errors.Join(errs...)
}

// EnvKeys lists each key with its environment variable, sorted, for `config keys`.
func EnvKeys() [][2]string {
	var out [][2]string
	for _, k := range Keys() {
		out = append(out, [2]string{k, EnvName(k)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// closest returns the candidate nearest to s by edit distance (case-insensitive); the first on a tie.
func closest(s string, candidates []string) string {
	best, bestDist := "", -1
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Kubernetes gives every pod, for each Service of its namespace (unless enableServiceLinks is false),
// variables named after the Service: NAME_SERVICE_HOST, NAME_SERVICE_PORT, NAME_SERVICE_PORT_PORTNAME, and
// the Docker-link style NAME_PORT, NAME_PORT_N_PROTO, NAME_PORT_N_PROTO_{PROTO,PORT,ADDR}, NAME being the
// Service's name in upper case with - as _. A Service named cimstream, or cimstream-anything, yields
// CIMSTREAM_* names. Only a name of one of these shapes holding the value Kubernetes writes there is
// ignored, so CIMSTREAM_ADMIN_PORT=9090, someone's guess at a key, is still an error.
var serviceLinks = []struct {
	name  *regexp.Regexp
	value func(v string, m []string) bool
}{
	{regexp.MustCompile(`^CIMSTREAM(?:_[A-Z0-9_]+)?_SERVICE_HOST$`), func(v string, _ []string) bool { return isIP(v) }},
	{regexp.MustCompile(`^CIMSTREAM(?:_[A-Z0-9_]+)?_SERVICE_PORT(?:_[A-Z0-9_]+)?$`), func(v string, _ []string) bool { return isPort(v) }},
	{regexp.MustCompile(`^CIMSTREAM(?:_[A-Z0-9_]+)?_PORT$`), func(v string, _ []string) bool { return isLinkURL(v, "", "") }},
	{regexp.MustCompile(`^CIMSTREAM(?:_[A-Z0-9_]+)?_PORT_([0-9]+)_(TCP|UDP|SCTP)$`), func(v string, m []string) bool { return isLinkURL(v, m[2], m[1]) }},
	{regexp.MustCompile(`^CIMSTREAM(?:_[A-Z0-9_]+)?_PORT_([0-9]+)_(TCP|UDP|SCTP)_PROTO$`), func(v string, m []string) bool { return v == strings.ToLower(m[2]) }},
	{regexp.MustCompile(`^CIMSTREAM(?:_[A-Z0-9_]+)?_PORT_([0-9]+)_(TCP|UDP|SCTP)_PORT$`), func(v string, m []string) bool { return isPort(v) && v == m[1] }},
	{regexp.MustCompile(`^CIMSTREAM(?:_[A-Z0-9_]+)?_PORT_([0-9]+)_(TCP|UDP|SCTP)_ADDR$`), func(v string, _ []string) bool { return isIP(v) }},
}

// isServiceLink reports whether name=value is a variable Kubernetes made for a Service (see serviceLinks).
func isServiceLink(name, value string) bool {
	for _, l := range serviceLinks {
		if m := l.name.FindStringSubmatch(name); m != nil && l.value(value, m) {
			return true
		}
	}
	return false
}

func isIP(s string) bool { return net.ParseIP(s) != nil }

func isPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0 && n < 1<<16 && strconv.Itoa(n) == s
}

// isLinkURL: proto://ip:port, as tcp://10.96.0.1:8080 or tcp://[fd00::1]:8080; proto (upper case) and port
// are checked when given.
func isLinkURL(s, proto, port string) bool {
	scheme, hostPort, ok := strings.Cut(s, "://")
	if !ok || (scheme != "tcp" && scheme != "udp" && scheme != "sctp") || (proto != "" && scheme != strings.ToLower(proto)) {
		return false
	}
	host, p, err := net.SplitHostPort(hostPort)
	return err == nil && isIP(host) && isPort(p) && (port == "" || p == port)
}
