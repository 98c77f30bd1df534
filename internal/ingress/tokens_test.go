package ingress

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
)

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
