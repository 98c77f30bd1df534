package ingress

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/retry"
)

// Tokens are the accepted bearer tokens, read from a file and read again when the file changes. A line is
// a token, optionally followed by its binding (blank lines and # comments are skipped):
//
//	<token> [serviceIdentifiers=<glob>,...] [channels=<glob>,...]
//
// A token with no binding may write for any serviceIdentifier and channel, as before bindings existed.
type Tokens struct {
	path string
	log  *zap.Logger
	set  atomic.Pointer[[]Tenant]
	last atomic.Pointer[[32]byte]
	// emptyKept is set when an empty file was read once and the tokens before it kept (reload's goroutine only).
	emptyKept bool
	// unfinished is the digest of a file last read without a newline at its end (reload's goroutine only):
	// the same bytes read again are the file as meant (a Kubernetes secret made with --from-literal has no
	// final newline), not a rewrite caught half-way.
	unfinished *[32]byte
}

// Tenant is what a token may do. Its identity is the token's SHA-256 digest: idempotency and request slots
// are kept per tenant without holding the token itself.
type Tenant struct {
	id   [32]byte
	line int
	// ServiceIdentifiers and Channels are path.Match globs; nil allows any.
	ServiceIdentifiers []string
	Channels           []string
}

// anyone is the tenant of every request when no tokens file is configured.
var anyone = &Tenant{}

// Bound reports whether the tenant is limited to some serviceIdentifiers or channels.
func (t *Tenant) Bound() bool { return t.ServiceIdentifiers != nil || t.Channels != nil }

// refuseServiceIdentifier says why the tenant may not write a message of serviceIdentifier (empty: a message
// without channelData), or is empty when it may.
func (t *Tenant) refuseServiceIdentifier(serviceIdentifier string) string {
	switch {
	case t.ServiceIdentifiers == nil:
		return ""
	case serviceIdentifier == "":
		return "the token is bound to serviceIdentifiers and the message names none (header.channelData.serviceIdentifier)"
	case !matchAny(t.ServiceIdentifiers, serviceIdentifier):
		return "the token is not bound to serviceIdentifier " + strconv.Quote(serviceIdentifier)
	}
	return ""
}

// refuseChannel says why the tenant may not write a message of serviceIdentifier to channel (mapped false:
// no channel takes it), or is empty when it may. The answer is the same for a channel outside the binding
// and for none, and names only the serviceIdentifier sent: a token learns nothing of the channel table
// beyond its own channels.
func (t *Tenant) refuseChannel(serviceIdentifier, channel string, mapped bool) string {
	if t.Channels == nil || (mapped && matchAny(t.Channels, channel)) {
		return ""
	}
	if serviceIdentifier == "" {
		return "the token is not bound to a channel that takes a message without a serviceIdentifier"
	}
	return "the token is not bound to a channel that takes serviceIdentifier " + strconv.Quote(serviceIdentifier)
}

func matchAny(globs []string, s string) bool {
	return slices.ContainsFunc(globs, func(g string) bool {
		ok, _ := path.Match(g, s)
		return ok
	})
}

// LoadTokens reads path; an unreadable or malformed file is an error naming ingress.tokensFile.
func LoadTokens(path string, log *zap.Logger) (*Tokens, error) {
	t := &Tokens{path: path, log: log}
	err := t.reload()
	if errors.Is(err, errUnfinished) {
		// Read once more a moment later: a file still being written differs then; the same bytes are taken.
		time.Sleep(unfinishedSettle)
		err = t.reload()
	}
	if err != nil {
		return nil, fmt.Errorf("config ingress.tokensFile: %w", err)
	}
	return t, nil
}

// errUnfinished is a file read without a newline at its end, different from the read before.
var errUnfinished = errors.New("does not end with a newline and changed since the last read: taken for a rewrite caught half-way, read again")

// unfinishedSettle is how long start-up waits before reading an unfinished file again.
const unfinishedSettle = 200 * time.Millisecond

// Lookup returns the tenant of token. Every entry is compared, in constant time, so the time taken leaks
// neither which token matched nor a token's length or prefix.
func (t *Tokens) Lookup(token string) (*Tenant, bool) {
	if token == "" {
		return nil, false
	}
	d := sha256.Sum256([]byte(token))
	set := *t.set.Load()
	found := -1
	for i := range set {
		eq := subtle.ConstantTimeCompare(d[:], set[i].id[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return nil, false
	}
	return &set[found], true
}

// Watch reads the file again every interval and takes its tokens when its content changed, until ctx ends. A file that
// cannot be read or parsed, or whose last line has no newline yet, keeps the tokens last read (logged); a file with no token accepts no token, from the
// second reload in a row that finds it so (a non-atomic rewrite read half-way keeps the tokens).
func (t *Tokens) Watch(ctx context.Context, every time.Duration) {
	retry.Every(ctx, every, func() bool {
		if err := t.reload(); err != nil {
			t.log.Error("ingress: cannot read ingress.tokensFile; keeping the tokens read before", zap.Error(err))
		}
		return true
	})
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
		// Back to the content in force: an empty file seen before it was not a second one in a row.
		t.emptyKept = false
		return nil
	}
	// A rewrite in place read half-way ends mid-line, and a cut line can widen a binding ("tokA " is a bare
	// tokA, "t" a token of its own): an unfinished last line is taken only when the next read finds the same
	// bytes (a file written without a final newline), never on the read that first sees it.
	if len(data) > 0 && data[len(data)-1] != '\n' {
		if t.unfinished == nil || *t.unfinished != sum {
			t.unfinished = &sum
			return fmt.Errorf("%s %w", t.path, errUnfinished)
		}
	}
	t.unfinished = nil
	set, err := parseTokens(data)
	if err != nil {
		return err
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
		var unbound []int
		for _, e := range set {
			if !e.Bound() {
				unbound = append(unbound, e.line)
			}
		}
		t.log.Info("ingress: bearer tokens loaded", zap.String("file", t.path), zap.Int("tokens", len(set)))
		if len(unbound) > 0 {
			// Lines, never tokens: the log is read by more people than the file.
			t.log.Warn("ingress: tokens without serviceIdentifiers= or channels= may write for any serviceIdentifier and channel",
				zap.String("file", t.path), zap.Ints("lines", unbound))
		}
	}
	return nil
}

// maxTokensLine bounds a line of the tokens file: a token and its globs fit many times over.
const maxTokensLine = 64 << 10

// parseTokens reads the file's lines; an unknown attribute, a bad glob or a token on two lines is an error
// naming its lines.
func parseTokens(data []byte) ([]Tenant, error) {
	var set []Tenant
	lineOf := map[[32]byte]int{}
	// A BOM (Windows editors, PowerShell) would otherwise become part of the first token. Split on newlines
	// directly: a line-length limit that stops reading would silently drop the lines after it.
	lines := bytes.Split(bytes.TrimPrefix(data, []byte("\ufeff")), []byte("\n"))
	for i, line := range lines {
		n := i + 1
		if len(line) > maxTokensLine {
			return nil, fmt.Errorf("line %d: longer than %d bytes", n, maxTokensLine)
		}
		fields := strings.Fields(string(line))
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		e := Tenant{id: sha256.Sum256([]byte(fields[0])), line: n}
		// A later line would silently replace the binding of the first (a bare copy unbinding it).
		if first, dup := lineOf[e.id]; dup {
			return nil, fmt.Errorf("line %d: the token of line %d again (each token on one line only)", n, first)
		}
		lineOf[e.id] = n
		for i, f := range fields[1:] {
			key, val, _ := strings.Cut(f, "=")
			var globs []string
			for _, g := range strings.Split(val, ",") {
				if g == "" {
					continue
				}
				if _, err := path.Match(g, ""); err != nil {
					return nil, fmt.Errorf("line %d: field %d: bad glob", n, i+2)
				}
				globs = append(globs, g)
			}
			if globs == nil {
				return nil, fmt.Errorf("line %d: field %d names no glob (want serviceIdentifiers=<glob>,... or channels=<glob>,...)", n, i+2)
			}
			switch key {
			case "serviceIdentifiers":
				e.ServiceIdentifiers = append(e.ServiceIdentifiers, globs...)
			case "channels":
				e.Channels = append(e.Channels, globs...)
			default:
				// Not echoed: it may be the rest of a token with a space in it.
				return nil, fmt.Errorf("line %d: field %d is neither serviceIdentifiers=<glob>,... nor channels=<glob>,... (a token has no spaces)", n, i+2)
			}
		}
		set = append(set, e)
	}
	return set, nil
}
