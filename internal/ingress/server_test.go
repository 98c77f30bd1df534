package ingress

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/config"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns a pool that trusts it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cimstream-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func serverConfig() config.Config {
	cfg := config.Default()
	cfg.Channels = map[string]string{"web": "web"}
	cfg.Ingress.Address = "127.0.0.1:0"
	cfg.Shutdown.Timeout = 5 * time.Second
	return cfg
}

// TestServerTLSAndShutdown: with certFile and keyFile the listener speaks HTTPS only; cancelling Run waits
// for the request in flight, answers it, and returns.
func TestServerTLSAndShutdown(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	cfg := serverConfig()
	cfg.Ingress.TLS = config.IngressTLS{CertFile: certFile, KeyFile: keyFile}
	rec := &recorder{block: make(chan struct{}), began: make(chan struct{}, 1)}
	srv, err := NewServer(cfg, rec, nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	addr := <-srv.Addr()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}

	if resp, err := http.Post("http://"+addr+"/cim-messages", "application/json", strings.NewReader(valid)); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusAccepted {
			t.Error("plain HTTP was accepted on a TLS listener")
		}
	}
	answer := make(chan int, 1)
	go func() {
		resp, err := client.Post("https://"+addr+"/cim-messages", "application/json", strings.NewReader(valid))
		if err != nil {
			answer <- 0
			return
		}
		resp.Body.Close()
		answer <- resp.StatusCode
	}()
	<-rec.began // in flight, its write not acknowledged yet
	cancel()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Run returned with a request in flight: %v", err)
	default:
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("the listener still accepts after shutdown began")
	}
	close(rec.block)
	if code := <-answer; code != http.StatusAccepted {
		t.Errorf("the request in flight at shutdown: %d, want 202", code)
	}
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestServerRefusesABadCertificateNamingTheKey(t *testing.T) {
	cfg := serverConfig()
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "c"), []byte("not a cert"), 0o600)
	cfg.Ingress.TLS = config.IngressTLS{CertFile: filepath.Join(dir, "c"), KeyFile: filepath.Join(dir, "c")}
	if _, err := NewServer(cfg, &recorder{}, nil, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "ingress.tls.certFile") {
		t.Fatalf("error %v", err)
	}
}

// TestServerClosesASlowRequestWithinItsShareOfTheBudget: a body still trickling in at shutdown (readTimeout
// longer than the budget, which validation refuses but the server must survive) does not keep Run past the
// front doors' part of shutdown.timeout: its connection is closed, so the pipelines keep their reserve.
func TestServerClosesASlowRequestWithinItsShareOfTheBudget(t *testing.T) {
	cfg := serverConfig()
	cfg.Shutdown.Timeout = 2 * time.Second
	cfg.Ingress.ReadTimeout = 10 * time.Second
	srv, err := NewServer(cfg, &recorder{}, nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	c, err := net.Dial("tcp", <-srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "POST /cim-messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if took := time.Since(start); took > cfg.Shutdown.FrontBudget()+500*time.Millisecond {
			t.Errorf("Run returned after %v, the ingress's budget is %v", took, cfg.Shutdown.FrontBudget())
		}
		if err == nil {
			t.Error("Run must report the request it cut")
		}
	case <-time.After(cfg.Shutdown.Timeout + time.Second):
		t.Fatal("Run did not return within shutdown.timeout: the slow body kept the front door open")
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the slow connection is still open")
	}
}
