package cim_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// violationCodes reads the Code* constants of violation.go, so a new code cannot be left out of the
// lists below.
func violationCodes(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "violation.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	ast.Inspect(f, func(n ast.Node) bool {
		if vs, ok := n.(*ast.ValueSpec); ok && len(vs.Names) == 1 && strings.HasPrefix(vs.Names[0].Name, "Code") {
			if lit, ok := vs.Values[0].(*ast.BasicLit); ok {
				s, _ := strconv.Unquote(lit.Value)
				codes = append(codes, s)
			}
		}
		return true
	})
	if len(codes) < 11 {
		t.Fatalf("found only %v", codes)
	}
	return codes
}

// Every violation code is documented in docs/validation.md and allowed by the ingress's OpenAPI
// description (the 400 body lists violations with their codes).
func TestEveryCodeIsListed(t *testing.T) {
	docs, err := os.ReadFile("../../docs/validation.md")
	if err != nil {
		t.Fatal(err)
	}
	api, err := os.ReadFile("../../schemas/ingress.openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var enum string
	for _, line := range strings.Split(string(api), "\n") {
		if strings.Contains(line, "enum: [malformed") {
			enum = line
		}
	}
	for _, c := range violationCodes(t) {
		if !strings.Contains(string(docs), "| `"+c+"` |") {
			t.Errorf("docs/validation.md has no row for code %q", c)
		}
		if !strings.Contains(enum, "["+c+",") && !strings.Contains(enum, " "+c+",") && !strings.Contains(enum, " "+c+"]") {
			t.Errorf("schemas/ingress.openapi.yaml's violation code enum lacks %q: %s", c, enum)
		}
	}
}
