package ingress

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// Valid reports whether token is one of the accepted tokens.
func (t *Tokens) Valid(token string) bool {
	_, ok := t.Lookup(token)
	return ok
}

// writeTokens writes content to a fresh tokens file and returns its path.
func writeTokens(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDuplicateTokenIsAFileError: a token on two lines would silently take the later line's binding (a
// bound token made unbound by a bare copy below it): the file is refused, naming both lines, never the
// token; on a reload the tokens in force are kept.
func TestDuplicateTokenIsAFileError(t *testing.T) {
	_, err := LoadTokens(writeTokens(t, "tokA serviceIdentifiers=web*\nother\n\ntokA\n"), zap.NewNop())
	if err == nil {
		t.Fatal("a duplicate token was accepted")
	}
	if msg := err.Error(); !strings.Contains(msg, "ingress.tokensFile") || !strings.Contains(msg, "line 4") || !strings.Contains(msg, "line 1") || strings.Contains(msg, "tokA") {
		t.Errorf("error %q: want ingress.tokensFile, lines 1 and 4, never the token", msg)
	}
	tokens, path := tokensFile(t, "tokA serviceIdentifiers=web*\n")
	_ = os.WriteFile(path, []byte("tokA serviceIdentifiers=web*\ntokA\n"), 0o600)
	if err := tokens.reload(); err == nil {
		t.Error("a reload with a duplicate token was taken")
	}
	if tn, ok := tokens.Lookup("tokA"); !ok || !tn.Bound() {
		t.Error("after a refused reload tokA must keep its binding")
	}
}

// TestTooLongTokensLineIsAFileError: a line over 64 KiB once ended the reading there, dropping the tokens
// after it without an error; now the file is refused, naming the line.
func TestTooLongTokensLineIsAFileError(t *testing.T) {
	_, err := LoadTokens(writeTokens(t, "tokA\n"+strings.Repeat("x", 70<<10)+"\ntokB\n"), zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "ingress.tokensFile") {
		t.Fatalf("error %v: want a file error naming line 2", err)
	}
	// A long line that is still a token's (bindings listing many globs) is read whole.
	long := "tokC serviceIdentifiers=" + strings.Repeat("web-*,", 3000) + "web\ntokD\n"
	tokens, err := LoadTokens(writeTokens(t, long), zap.NewNop())
	if err != nil || !tokens.Valid("tokC") || !tokens.Valid("tokD") {
		t.Fatalf("a 18 KiB line: %v", err)
	}
}

// TestTokensFileWithoutATrailingNewlineIsIncomplete: a rewrite in place read half-way can widen a binding
// (cut at "tokA " a bare tokA, cut at "t" a one-character token). A file whose last line lacks its newline
// is refused at start-up naming the file, and on a reload the tokens in force are kept until it is complete.
func TestTokensFileWithoutATrailingNewlineIsIncomplete(t *testing.T) {
	// A file written without a final newline (a Kubernetes secret made with --from-literal) reads the same
	// bytes twice: taken at start-up.
	stable, err := LoadTokens(writeTokens(t, "other\ntokA serviceIdentifiers=web*"), zap.NewNop())
	if err != nil {
		t.Fatalf("a file without a final newline at start-up: %v", err)
	}
	if tn, ok := stable.Lookup("tokA"); !ok || !tn.Bound() || !stable.Valid("other") {
		t.Fatal("the file without a final newline was not taken as written")
	}
	tokens, path := tokensFile(t, "other\ntokA serviceIdentifiers=web*\n")
	for _, cut := range []string{"other\ntokA serviceIdentifiers=web*\ntokA ", "other\ntokA serviceIdentifiers=web*\nt", "other\ntokA "} {
		_ = os.WriteFile(path, []byte(cut), 0o600)
		if err := tokens.reload(); err == nil {
			t.Errorf("%q: a file cut mid-line was taken", cut)
		}
		if tn, ok := tokens.Lookup("tokA"); !ok || !tn.Bound() {
			t.Errorf("%q: tokA lost its binding", cut)
		}
		if tokens.Valid("t") || !tokens.Valid("other") {
			t.Errorf("%q: the tokens in force changed", cut)
		}
	}
	// The same unfinished bytes on the next read are the file as meant: taken then, never on the first read.
	_ = os.WriteFile(path, []byte("other\ntokA serviceIdentifiers=web*\nt3"), 0o600)
	if err := tokens.reload(); err == nil || tokens.Valid("t3") {
		t.Fatalf("first read of an unfinished file: %v, t3 valid %v", err, tokens.Valid("t3"))
	}
	if err := tokens.reload(); err != nil || !tokens.Valid("t3") {
		t.Fatalf("second read of the same bytes: %v, want taken", err)
	}
	// Completed: read again and taken.
	_ = os.WriteFile(path, []byte("other\ntokA serviceIdentifiers=web*\nt2\n"), 0o600)
	if err := tokens.reload(); err != nil || !tokens.Valid("t2") {
		t.Fatalf("the completed file: %v", err)
	}
}

// TestChannelBoundTokenCannotProbeTheChannelTable: a token bound only by channels gets the same 403 for a
// serviceIdentifier that maps to a channel outside its binding as for one that maps to none, naming
// neither the channel nor whether one exists.
func TestChannelBoundTokenCannotProbeTheChannelTable(t *testing.T) {
	tokens, _ := tokensFile(t, "wa-tok channels=whats*\n")
	opts := testOptions()
	opts.Channels = map[string]string{"site-1": "webchat", "4144": "whatsapp"}
	opts.Tokens = tokens
	srv := serve(t, opts, &recorder{})
	url := srv.URL + "/cim-messages"
	foreign := post(t, url, "application/json", msgFor("p-1", "site-1", "x"), bearerOf("wa-tok")...)
	unmapped := post(t, url, "application/json", msgFor("p-2", "site-2", "x"), bearerOf("wa-tok")...)
	if foreign.code != http.StatusForbidden || unmapped.code != http.StatusForbidden {
		t.Fatalf("mapped to another channel: %d %s; mapped to none: %d %s; want 403 both", foreign.code, foreign.body, unmapped.code, unmapped.body)
	}
	f, u := problemOf(t, foreign), problemOf(t, unmapped)
	if strings.Replace(f.Message, "site-1", "SI", 1) != strings.Replace(u.Message, "site-2", "SI", 1) || f.Error != u.Error {
		t.Errorf("the answers differ: %q / %q", f.Message, u.Message)
	}
	if strings.Contains(string(foreign.body), "webchat") {
		t.Errorf("403 names the channel the token may not see: %s", foreign.body)
	}
	if r := post(t, url, "application/json", msgFor("p-3", "4144", "x"), bearerOf("wa-tok")...); r.code != http.StatusAccepted {
		t.Errorf("within its binding: %d %s", r.code, r.body)
	}
}
