package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestChannelsTableSharedByBothDirections: the top-level channels table is what both directions read, and
// the deprecated outbound.channels still works alone, with a deprecation naming its replacement.
func TestChannelsTableSharedByBothDirections(t *testing.T) {
	cfg, err := Load("", nil, []string{"channels=web=web,41445556677=whatsapp"})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.ChannelMap(); got["41445556677"] != "whatsapp" || len(got) != 2 {
		t.Fatalf("ChannelMap() = %v", got)
	}
	if d := cfg.Deprecations(); len(d) != 0 {
		t.Errorf("no deprecated key set, got %v", d)
	}
	old, err := Load("", nil, []string{"outbound.channels=web=web"})
	if err != nil {
		t.Fatal(err)
	}
	if old.ChannelMap()["web"] != "web" {
		t.Errorf("outbound.channels alone must still route: %v", old.ChannelMap())
	}
	d := old.Deprecations()
	if len(d) != 1 || !strings.Contains(d[0], "outbound.channels") || !strings.Contains(d[0], "channels") {
		t.Errorf("deprecation = %v, want one naming outbound.channels and its replacement", d)
	}
}

func TestBothChannelTablesIsAnErrorNamingBothKeys(t *testing.T) {
	_, err := Load("", nil, []string{"channels=web=web", "outbound.channels=web=web"})
	if err == nil {
		t.Fatal("channels and outbound.channels together were accepted")
	}
	if msg := err.Error(); !strings.Contains(msg, "config channels:") || !strings.Contains(msg, "outbound.channels") {
		t.Errorf("error %q must name channels and outbound.channels", msg)
	}
}

func TestIngressErrorsNameTheKey(t *testing.T) {
	for _, c := range []struct {
		settings []string
		key      string
	}{
		{[]string{"ingress.address=nohost"}, "ingress.address"},
		{[]string{"ingress.address=127.0.0.1:8080"}, "ingress.address"}, // the admin listener's
		{[]string{"ingress.address=:8081", "ingress.tls.certFile=c.pem"}, "ingress.tls.certFile"},
		{[]string{"ingress.address=:8081", "ingress.maxBodyBytes=1048576"}, "ingress.maxBodyBytes"},
		{[]string{"ingress.address=:8081", "ingress.maxConcurrent=0"}, "ingress.maxConcurrent"},
		{[]string{"ingress.address=:8081", "ingress.defaultChannel=a/b"}, "ingress.defaultChannel"},
		{[]string{"ingress.address=:8081", "ingress.produceTimeout=0s"}, "ingress.produceTimeout"},
		{[]string{"ingress.address=:8081", "ingress.maxHeaderBytes=100"}, "ingress.maxHeaderBytes"},
		{[]string{"ingress.address=:8081", "ingress.maxConnections=0"}, "ingress.maxConnections"},
		{[]string{"ingress.address=:8081", "ingress.idempotencyMaxBytes=0"}, "ingress.idempotencyMaxBytes"},
		{[]string{"ingress.address=:8081", "ingress.maxInFlightBytes=1000"}, "ingress.maxInFlightBytes"},
		// A slow body could use the whole shutdown budget, leaving the pipelines no time to drain.
		{[]string{"ingress.address=:8081", "ingress.readTimeout=30s"}, "ingress.readTimeout"},
		{[]string{"ingress.address=:8081", "shutdown.timeout=20s"}, "ingress.readTimeout"},
		// A channel whose inbound topic the pipeline would never read.
		{[]string{"ingress.address=:8081", "channels=web=web", `topics.inboundPattern=^cim\.inbound\.sms$`}, "ingress.address"},
	} {
		_, err := Load("", nil, c.settings)
		if err == nil || !strings.Contains(err.Error(), "config "+c.key+":") {
			t.Errorf("%v: error %v, want one naming %s", c.settings, err, c.key)
		}
	}
}

// TestIngressTopicsAreReadByTheInboundPipeline: with the default pattern, every channel's topic is consumed.
// TestIngressTimeoutsFitTheShutdownBudget: the defaults fit, and the error names every key involved.
func TestIngressTimeoutsFitTheShutdownBudget(t *testing.T) {
	if _, err := Load("", nil, []string{"ingress.address=:8081"}); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	_, err := Load("", nil, []string{"ingress.address=:8081", "ingress.readTimeout=30s"})
	for _, key := range []string{"ingress.readTimeout", "ingress.produceTimeout", "shutdown.timeout"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("error %v does not name %s", err, key)
		}
	}
}

func TestIngressTopicsAreReadByTheInboundPipeline(t *testing.T) {
	cfg, err := Load("", nil, []string{"ingress.address=127.0.0.1:8081", "channels=web=web,x=sms", "ingress.defaultChannel=other"})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(cfg.IngressChannels(), ",")
	if got != "other,sms,web" {
		t.Errorf("IngressChannels() = %s", got)
	}
	listed, err := Load("", nil, []string{"ingress.address=127.0.0.1:8081", "channels=web=web", "topics.inboundPattern=", "topics.inbound=cim.inbound.web"})
	if err != nil {
		t.Fatalf("a listed topic is consumed too: %v", err)
	}
	if InboundTopic("web") != listed.Topics.Inbound[0] {
		t.Errorf("InboundTopic(web) = %s", InboundTopic("web"))
	}
}

func TestChannelsFromYAMLFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("channels: {web: web}\ningress:\n  address: 127.0.0.1:8081\n  defaultChannel: web\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Ingress.DefaultChannel != "web" || cfg.ChannelMap()["web"] != "web" {
		t.Errorf("ingress %+v, channels %v", cfg.Ingress, cfg.ChannelMap())
	}
}

// TestIngressInFlightBytesDefaultsToAQuarterOfTheBudget: request bodies are charged to the memory budget,
// a quarter of it unless set, never less than one largest body, unbounded only without a budget.
func TestIngressInFlightBytesDefaultsToAQuarterOfTheBudget(t *testing.T) {
	for _, c := range []struct {
		settings []string
		want     int64
	}{
		{nil, 32 << 20},
		{[]string{"memory.budgetBytes=1048576"}, 1<<20 - IngressIDHeadroom},
		{[]string{"memory.budgetBytes=0"}, 0},
		{[]string{"ingress.maxInFlightBytes=4194304"}, 4 << 20},
	} {
		cfg, err := Load("", nil, append([]string{"ingress.address=:8081"}, c.settings...))
		if err != nil {
			t.Fatalf("%v: %v", c.settings, err)
		}
		if got := cfg.IngressInFlightBytes(); got != c.want {
			t.Errorf("%v: %d, want %d", c.settings, got, c.want)
		}
	}
	cfg := Default()
	if cfg.Ingress.MaxHeaderBytes != 16<<10 || cfg.Ingress.MaxConnections != 1024 || cfg.Ingress.IdempotencyMaxBytes != 8<<20 {
		t.Errorf("defaults %+v", cfg.Ingress)
	}
}
