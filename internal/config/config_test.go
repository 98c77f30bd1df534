package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cimstream.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsAreValid(t *testing.T) {
	cfg := Default()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults must validate: %v", err)
	}
}

func TestPrecedenceFileThenEnvThenSettings(t *testing.T) {
	path := writeFile(t, `
kafka:
  brokers: [file:9092]
  producer:
    batchTimeout: 7ms
inbound:
  sessionIdleTimeout: 10m
log:
  level: warn
`)
	env := []string{"CIMSTREAM_KAFKA_BROKERS=env1:9092,env2:9092", "CIMSTREAM_INBOUND_SESSION_IDLE_TIMEOUT=20m", "OTHER=x"}
	cfg, err := Load(path, env, []string{"inbound.sessionIdleTimeout=30s"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.Kafka.Brokers, ","); got != "env1:9092,env2:9092" {
		t.Errorf("env must override the file: brokers = %s", got)
	}
	if cfg.Kafka.Producer.BatchTimeout != 7*time.Millisecond {
		t.Errorf("file value lost: batchTimeout = %v", cfg.Kafka.Producer.BatchTimeout)
	}
	if cfg.Inbound.SessionIdleTimeout != 30*time.Second {
		t.Errorf("settings must override env: idle = %v", cfg.Inbound.SessionIdleTimeout)
	}
	if cfg.Log.Level != "warn" {
		t.Errorf("log.level = %s", cfg.Log.Level)
	}
	if cfg.Kafka.Consumer.GroupID != "cimstream" {
		t.Errorf("untouched key lost its default: %s", cfg.Kafka.Consumer.GroupID)
	}
}

// TestReplayWindowAtItsMinimumIsValid: exactly 2 × (session + rebalance timeout) is accepted.
func TestReplayWindowAtItsMinimumIsValid(t *testing.T) {
	if _, err := Load("", nil, []string{"inbound.replayWindow=80s"}); err != nil {
		t.Fatal(err)
	}
}

// TestBatchBytesAtTheHeadroomIsValid: exactly maxMessageBytes + the headroom is accepted.
func TestBatchBytesAtTheHeadroomIsValid(t *testing.T) {
	if _, err := Load("", nil, []string{"kafka.producer.batchBytes=1114112"}); err != nil {
		t.Fatal(err)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name, file string
		env        []string
		settings   []string
		want       string
	}{
		{name: "unknown key in file", file: "kafka:\n  brokrs: [a:1]\n", want: "line 2: kafka.brokrs is not a known key; the closest is kafka.brokers"},
		{name: "malformed yaml", file: "kafka: [\n", want: "line 1"},
		{name: "bad duration in file", file: "inbound:\n  sessionIdleTimeout: soon\n", want: "sessionIdleTimeout"},
		{name: "bad broker", settings: []string{"kafka.brokers=nohost"}, want: "kafka.brokers"},
		{name: "bad env duration", env: []string{"CIMSTREAM_SHUTDOWN_TIMEOUT=x"}, want: "CIMSTREAM_SHUTDOWN_TIMEOUT"},
		{name: "negative", settings: []string{"shutdown.timeout=-1s"}, want: "shutdown.timeout"},
		{name: "unknown setting", settings: []string{"kafka.clientID=1"}, want: "kafka.clientID: not a known key; the closest is kafka.clientId"},
		{name: "bad enum", settings: []string{"kafka.producer.compression=brotli"}, want: "kafka.producer.compression"},
		{name: "bad regexp", settings: []string{"topics.inboundPattern=(("}, want: "topics.inboundPattern"},
		{name: "bad topic", settings: []string{"topics.deadLetter=a b"}, want: "topics.deadLetter"},
		{name: "sasl without user", settings: []string{"kafka.sasl.mechanism=scram-sha-512"}, want: "kafka.sasl.username"},
		{name: "not key=value", settings: []string{"oops"}, want: "expected key=value"},
		{name: "missing file", file: "-", want: "config file"},
		{name: "unknown route field", file: "outbound:\n  routes:\n    - destinaton: [x]\n", want: "outbound.routes[0].destinaton is not a known key; the closest is outbound.routes"},
		{name: "route without destinations", file: "outbound:\n  routes:\n    - name: r\n", want: "outbound.routes[0].destinations"},
		// The client's record limit must leave room for what enrichment adds to the largest valid message.
		{name: "batchBytes equal to maxMessageBytes", settings: []string{"kafka.producer.batchBytes=1048576"},
			want: "kafka.producer.batchBytes: 1048576 leaves no room for enrichment: it must be at least inbound.maxMessageBytes (1048576) + 65536"},
		{name: "replay window one second short", settings: []string{"inbound.replayWindow=79s"},
			want: "inbound.replayWindow: 1m19s is too short: it must be at least 2 × (kafka.consumer.sessionTimeout + kafka.consumer.rebalanceTimeout) = 1m20s"},
		{name: "batchBytes one short", settings: []string{"kafka.producer.batchBytes=1114111"}, want: "kafka.producer.batchBytes"},
		// A key's state is written once per batch: the client must take the largest one.
		{name: "batchBytes under a session state", settings: []string{"inbound.maxMessageBytes=4096", "kafka.producer.batchBytes=327679"},
			want: "kafka.producer.batchBytes: 327679 cannot hold a session state: it must be at least the state cap (262144) + 65536 = 327680"},
		{name: "dead-letter value over the client limit", settings: []string{"deadLetters.maxValueBytes=1100000"}, want: "deadLetters.maxValueBytes"},
		{name: "startup timeout not positive", settings: []string{"startup.timeout=0s"}, want: "config startup.timeout: must be a positive duration"},
		{name: "negative memory budget", settings: []string{"memory.budgetBytes=-1"}, want: "memory.budgetBytes"},
		{name: "session events on the changelog", settings: []string{"topics.sessionEvents=cimstream.sessions"},
			want: `topics.sessionEvents: must not be topics.sessions ("cimstream.sessions")`},
		{name: "session events on a connector topic", settings: []string{"topics.sessionEvents=cim.inbound.events"},
			want: `topics.sessionEvents: "cim.inbound.events" is a connector topic`},
		{name: "revokeWait beyond the rebalance timeout", settings: []string{"kafka.consumer.revokeWait=1m"}, want: "kafka.consumer.revokeWait"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := ""
			switch c.file {
			case "":
			case "-":
				path = filepath.Join(t.TempDir(), "absent.yaml")
			default:
				path = writeFile(t, c.file)
			}
			_, err := Load(path, c.env, c.settings)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v should mention %q", err, c.want)
			}
		})
	}
}

func TestSecretsAreMaskedAndReadFromFile(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(secret, []byte("s3cret-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load("", []string{"CIMSTREAM_KAFKA_SASL_PASSWORD=s3cret-env"}, []string{
		"kafka.sasl.mechanism=scram-sha-512", "kafka.sasl.username=u", "kafka.sasl.passwordFile=" + secret,
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Kafka.SASL.Password != "s3cret-from-file" {
		t.Fatalf("password file must win and be trimmed, got %q", cfg.Kafka.SASL.Password)
	}
	out, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "s3cret") || !strings.Contains(string(out), "********") {
		t.Fatalf("secret not masked:\n%s", out)
	}
	if cfg.Kafka.SASL.Password != "s3cret-from-file" {
		t.Fatal("masking must not change the original")
	}
}

func TestEnvNames(t *testing.T) {
	for key, want := range map[string]string{
		"kafka.brokers":              "CIMSTREAM_KAFKA_BROKERS",
		"inbound.sessionIdleTimeout": "CIMSTREAM_INBOUND_SESSION_IDLE_TIMEOUT",
		"kafka.metadataTTL":          "CIMSTREAM_KAFKA_METADATA_TTL",
		"kafka.tls.caFile":           "CIMSTREAM_KAFKA_TLS_CA_FILE",
		"outbound.channels":          "CIMSTREAM_OUTBOUND_CHANNELS",
	} {
		if got := EnvName(key); got != want {
			t.Errorf("EnvName(%s) = %s, want %s", key, got, want)
		}
	}
}

func TestMapSetting(t *testing.T) {
	cfg, err := Load("", nil, []string{"outbound.channels=+4411=whatsapp, web.example.com=web"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Outbound.Channels["+4411"] != "whatsapp" || cfg.Outbound.Channels["web.example.com"] != "web" {
		t.Fatalf("channels = %v", cfg.Outbound.Channels)
	}
}

// TestEveryKeyIsDocumented keeps docs/configuration.md complete as keys are added.
func TestEveryKeyIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range Keys() {
		if !strings.Contains(string(doc), "`"+key+"`") {
			t.Errorf("docs/configuration.md does not document %s", key)
		}
	}
}

func TestIdleTimeoutsPerChannel(t *testing.T) {
	in := Inbound{SessionIdleTimeout: 30 * time.Minute, SessionIdleTimeouts: []IdleTimeout{
		{ServiceIdentifier: "4144*", Timeout: time.Hour},
		{ServiceIdentifier: "41445556677", Timeout: time.Minute},
	}}
	for sid, want := range map[string]time.Duration{"41445556677": time.Minute, "4144999": time.Hour, "web": 30 * time.Minute, "": 30 * time.Minute} {
		if got := in.IdleTimeoutFor(sid); got != want {
			t.Errorf("%q: %v, want %v", sid, got, want)
		}
	}
	cfg := Default()
	cfg.Inbound.SessionIdleTimeouts = []IdleTimeout{{ServiceIdentifier: "[", Timeout: time.Minute}, {ServiceIdentifier: "x"}}
	err := cfg.Validate()
	for _, key := range []string{"inbound.sessionIdleTimeouts[0].serviceIdentifier", "inbound.sessionIdleTimeouts[1].timeout"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("error must name %s: %v", key, err)
		}
	}
}

// TestUnknownEnvironmentVariableNamesTheClosestKey: a misspelt override is an error, not ignored.
func TestUnknownEnvironmentVariableNamesTheClosestKey(t *testing.T) {
	cases := map[string]string{
		"CIMSTREAM_KAFKA_BROKER":            "the closest is CIMSTREAM_KAFKA_BROKERS (kafka.brokers)",
		"CIMSTREAM_INBOUND_SESSION_TIMEOUT": "the closest is CIMSTREAM_INBOUND_SESSION_IDLE_TIMEOUT (inbound.sessionIdleTimeout)",
		"CIMSTREAM_KAFKA_SASL_PASSWROD":     "the closest is CIMSTREAM_KAFKA_SASL_PASSWORD (kafka.sasl.password)",
	}
	for name, want := range cases {
		_, err := Load("", []string{name + "=x"}, nil)
		if err == nil || !strings.Contains(err.Error(), "environment variable "+name+" is not a configuration key") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v should name it and say %q", name, err, want)
		}
	}
	// The project's own tooling variables and other prefixes are not configuration.
	env := []string{"KAFKA_BROKERS=a:1", "CIMSTREAMING=1"}
	for _, name := range ToolingEnv {
		env = append(env, name+"=1")
	}
	if _, err := Load("", env, nil); err != nil {
		t.Fatalf("tooling variables must be accepted: %v", err)
	}
}

// TestSASLMechanismAnyCase: Kafka's own spelling (SCRAM-SHA-512) is accepted, from every source.
func TestSASLMechanismAnyCase(t *testing.T) {
	for _, m := range []string{"SCRAM-SHA-512", "Scram-Sha-256", "PLAIN"} {
		cfg, err := Load("", []string{"CIMSTREAM_KAFKA_SASL_MECHANISM=" + m, "CIMSTREAM_KAFKA_SASL_USERNAME=u"}, nil)
		if err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		if cfg.Kafka.SASL.Mechanism != strings.ToLower(m) {
			t.Errorf("%s loaded as %q", m, cfg.Kafka.SASL.Mechanism)
		}
	}
	path := writeFile(t, "kafka:\n  sasl: {mechanism: SCRAM-SHA-512, username: u}\n")
	if _, err := Load(path, nil, nil); err != nil {
		t.Fatalf("file: %v", err)
	}
	if _, err := Load("", nil, []string{"kafka.sasl.mechanism=GSSAPI", "kafka.sasl.username=u"}); err == nil || !strings.Contains(err.Error(), "kafka.sasl.mechanism") {
		t.Errorf("an unknown mechanism must name the key: %v", err)
	}
}

// TestYAMLTypeErrorsNameTheDottedKeyAndType: the error names the key as written in docs and the type in words.
func TestYAMLTypeErrorsNameTheDottedKeyAndType(t *testing.T) {
	cases := map[string]struct{ file, want string }{
		"int":      {"topics:\n  partitions: many\n", `line 2: topics.partitions: "many" is not a whole number`},
		"duration": {"inbound:\n  sessionIdleTimeout: soon\n", `line 2: inbound.sessionIdleTimeout: "soon" is not a duration such as 500ms or 10s`},
		"bool":     {"outbound:\n  routes:\n    - destinations: [a]\n      continue: maybe\n", `line 4: outbound.routes[0].continue: "maybe" is not true or false`},
		"list":     {"kafka:\n  brokers: a:1\n", `line 2: kafka.brokers: "a:1" is not a list of text values`},
		"section":  {"kafka:\n  producer: [1]\n", `line 2: kafka.producer: a list is not a section of keys`},
		"deep int": {"kafka:\n  producer:\n    batchSize: [1]\n", `line 3: kafka.producer.batchSize: a list is not a whole number`},
	}
	for name, c := range cases {
		_, err := Load(writeFile(t, c.file), nil, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v should contain %q", name, err, c.want)
		}
		if err != nil && (strings.Contains(err.Error(), "!!") || strings.Contains(err.Error(), "unmarshal")) {
			t.Errorf("%s: yaml's wording leaked: %v", name, err)
		}
	}
}

// TestKubernetesServiceLinksAreNotConfiguration: Kubernetes gives every pod service-link variables for each
// Service of its namespace; the release's Service is named cimstream (and others may be cimstream-...), so
// their names start with CIMSTREAM_. They must not stop the process, while a misspelt key still does.
func TestKubernetesServiceLinksAreNotConfiguration(t *testing.T) {
	// As a pod sees them for Service cimstream (port admin 8080/TCP), and for a Service cimstream-kafka
	// in the same namespace (ports 9092/TCP unnamed, and a named metrics port on UDP and SCTP).
	links := []string{
		"CIMSTREAM_SERVICE_HOST=10.96.12.34",
		"CIMSTREAM_SERVICE_PORT=8080",
		"CIMSTREAM_SERVICE_PORT_ADMIN=8080",
		"CIMSTREAM_PORT=tcp://10.96.12.34:8080",
		"CIMSTREAM_PORT_8080_TCP=tcp://10.96.12.34:8080",
		"CIMSTREAM_PORT_8080_TCP_PROTO=tcp",
		"CIMSTREAM_PORT_8080_TCP_PORT=8080",
		"CIMSTREAM_PORT_8080_TCP_ADDR=10.96.12.34",
		"CIMSTREAM_KAFKA_SERVICE_HOST=fd00:10:96::1a",
		"CIMSTREAM_KAFKA_SERVICE_PORT=9092",
		"CIMSTREAM_KAFKA_SERVICE_PORT_JMX_METRICS=5556",
		"CIMSTREAM_KAFKA_PORT=tcp://[fd00:10:96::1a]:9092",
		"CIMSTREAM_KAFKA_PORT_9092_TCP=tcp://[fd00:10:96::1a]:9092",
		"CIMSTREAM_KAFKA_PORT_9092_TCP_PROTO=tcp",
		"CIMSTREAM_KAFKA_PORT_9092_TCP_PORT=9092",
		"CIMSTREAM_KAFKA_PORT_9092_TCP_ADDR=fd00:10:96::1a",
		"CIMSTREAM_KAFKA_PORT_5556_UDP=udp://[fd00:10:96::1a]:5556",
		"CIMSTREAM_KAFKA_PORT_5556_UDP_PROTO=udp",
		"CIMSTREAM_KAFKA_PORT_5556_UDP_PORT=5556",
		"CIMSTREAM_KAFKA_PORT_5556_UDP_ADDR=fd00:10:96::1a",
		"CIMSTREAM_KAFKA_PORT_7000_SCTP=sctp://[fd00:10:96::1a]:7000",
	}
	env := append([]string{"CIMSTREAM_KAFKA_BROKERS=k:9092"}, links...)
	cfg, err := Load("", env, nil)
	if err != nil {
		t.Fatalf("service-link variables must be ignored: %v", err)
	}
	if got := strings.Join(cfg.Kafka.Brokers, ","); got != "k:9092" {
		t.Errorf("the real override next to them was lost: brokers %s", got)
	}
	// A misspelt key among them is still an error, and so are names of the service-link form whose
	// value is not what Kubernetes writes there (CIMSTREAM_ADMIN_PORT=9090 is someone's guess at a key).
	for _, bad := range []string{"CIMSTREAM_KAFKA_BROKER=k:9092", "CIMSTREAM_ADMIN_PORT=9090", "CIMSTREAM_SERVICE_HOST=",
		"CIMSTREAM_PORT_8080_TCP_PORT=http", "CIMSTREAM_SERVICE_PORT=8080x", "CIMSTREAM_PORT_8080_HTTP=tcp://10.96.12.34:8080"} {
		name, _, _ := strings.Cut(bad, "=")
		_, err := Load("", append(append([]string{}, links...), bad), nil)
		if err == nil || !strings.Contains(err.Error(), "environment variable "+name+" is not a configuration key") {
			t.Errorf("%s: error %v should name it", bad, err)
		}
	}
}

// TestYAMLErrorsNameTheKeyWhereTheValueIsUsed: with anchors and aliases the error names the key (and line)
// that uses the alias, not the anchor's; two bad values on one line are each named by their own key.
func TestYAMLErrorsNameTheKeyWhereTheValueIsUsed(t *testing.T) {
	cases := map[string]struct {
		file      string
		want      []string
		mustNotBe string
	}{
		"alias": {file: "topics: {partitions: &n 3}\nkafka:\n  consumer:\n    maxWait: *n\n",
			want:      []string{"line 4: kafka.consumer.maxWait: 3 is not a duration such as 500ms or 10s"},
			mustNotBe: "topics.partitions"},
		"aliased section": {file: "kafka:\n  producer: &p {batchSize: lots}\n  consumer: *p\n",
			want: []string{`line 2: kafka.producer.batchSize: "lots" is not a whole number`,
				`line 3: kafka.consumer.batchSize: "lots" is not a whole number`}},
		"two on one line": {file: "topics: {partitions: many, replicationFactor: lots}\n",
			want: []string{`line 1: topics.partitions: "many" is not a whole number`, `line 1: topics.replicationFactor: "lots" is not a whole number`}},
		"type error and unknown key": {file: "topics: {partitions: many, partition: 3}\n",
			want: []string{`line 1: topics.partitions: "many" is not a whole number`, "line 1: topics.partition is not a known key; the closest is topics.partitions"}},
	}
	for name, c := range cases {
		_, err := Load(writeFile(t, c.file), nil, nil)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q should contain %q", name, err, w)
			}
		}
		if c.mustNotBe != "" && strings.Contains(err.Error(), c.mustNotBe) {
			t.Errorf("%s: error %q blames %s", name, err, c.mustNotBe)
		}
		if n := strings.Count(err.Error(), "\n") + 1; n != len(c.want) {
			t.Errorf("%s: %d errors, want %d: %q", name, n, len(c.want), err)
		}
	}
}
