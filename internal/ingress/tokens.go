package ingress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Tokens are the accepted bearer tokens, read from a file (one a line; blank lines and # comments are
// skipped) and read again when the file changes.
type Tokens struct {
	path string
	log  *zap.Logger
	// set holds SHA-256 digests: comparing digests in constant time does not leak a token's length or prefix.
	set  atomic.Pointer[[][32]byte]
	last atomic.Pointer[[32]byte]
	// emptyKept is set when an empty file was read once and the tokens before it kept (reload's goroutine only).
	emptyKept bool
}

// LoadTokens reads path; an unreadable file is an error naming ingress.tokensFile.
func LoadTokens(path string, log *zap.Logger) (*Tokens, error) {
	t := &Tokens{path: path, log: log}
	if err := t.reload(); err != nil {
		return nil, fmt.Errorf("config ingress.tokensFile: %w", err)
	}
	return t, nil
}

// Valid reports whether token is one of the accepted tokens.
func (t *Tokens) Valid(token string) bool {
	if token == "" {
		return false
	}
	d := sha256.Sum256([]byte(token))
	ok := 0
	for _, s := range *t.set.Load() {
		ok |= subtle.ConstantTimeCompare(d[:], s[:])
	}
	return ok == 1
}

// Watch reads the file again every interval and takes its tokens when its content changed, until ctx ends. A file that
// cannot be read keeps the tokens last read (logged); a file with no token accepts no token, from the second
// reload that finds it so (a non-atomic rewrite read half-way keeps the tokens).
func (t *Tokens) Watch(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := t.reload(); err != nil {
				t.log.Error("ingress: cannot read ingress.tokensFile; keeping the tokens read before", zap.Error(err))
			}
		}
	}
}

func (t *Tokens) reload() error {
	// Read whole every time (a token file is tiny): a rewrite within the file system's time granularity,
	// or a Kubernetes secret's symlink swap, is seen all the same.
	data, err := os.ReadFile(t.path)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	if last := t.last.Load(); last != nil && *last == sum {
		return nil
	}
	var set [][32]byte
	// A BOM (Windows editors, PowerShell) would otherwise become part of the first token.
	sc := bufio.NewScanner(bytes.NewReader(bytes.TrimPrefix(data, []byte("\ufeff"))))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		set = append(set, sha256.Sum256([]byte(line)))
	}
	// An empty file right after tokens is more likely a rewrite caught half-way (truncated, not yet written)
	// than a decision to refuse every connector: keep the tokens for one more reload.
	if prev := t.set.Load(); len(set) == 0 && prev != nil && len(*prev) > 0 && !t.emptyKept {
		t.emptyKept = true
		if t.log != nil {
			t.log.Warn("ingress: ingress.tokensFile has no token; keeping the tokens read before until the next reload",
				zap.String("file", t.path))
		}
		return nil
	}
	t.emptyKept = false
	t.set.Store(&set)
	t.last.Store(&sum)
	if t.log != nil {
		t.log.Info("ingress: bearer tokens loaded", zap.String("file", t.path), zap.Int("tokens", len(set)))
	}
	return nil
}
