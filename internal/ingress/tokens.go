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
// cannot be read keeps the tokens last read (logged); an empty file accepts no token.
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
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		set = append(set, sha256.Sum256([]byte(line)))
	}
	t.set.Store(&set)
	t.last.Store(&sum)
	if t.log != nil {
		t.log.Info("ingress: bearer tokens loaded", zap.String("file", t.path), zap.Int("tokens", len(set)))
	}
	return nil
}
