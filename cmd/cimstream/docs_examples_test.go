package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// docCommandLines finds the cimstream command lines of a document: lines of code blocks and inline code
// spans that run cimstream (after a pipe, && or environment assignments).
func docCommandLines(text string) []string {
	var out []string
	add := func(s string) {
		for _, part := range regexp.MustCompile(`\|\s|&&`).Split(s, -1) {
			f := strings.Fields(strings.TrimSpace(part))
			for len(f) > 0 && strings.Contains(f[0], "=") && strings.ToUpper(f[0][:1]) == f[0][:1] {
				f = f[1:] // VAR=value before the command
			}
			if len(f) > 1 && f[0] == "cimstream" {
				out = append(out, strings.Join(f, " "))
			}
		}
	}
	inBlock := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inBlock = !inBlock
			continue
		}
		if inBlock {
			line = strings.TrimPrefix(strings.TrimSpace(line), "$ ")
			if i := strings.Index(line, " #"); i >= 0 {
				line = line[:i]
			}
			add(line)
			continue
		}
		for _, m := range regexp.MustCompile("`(cimstream [^`]+)`").FindAllStringSubmatch(line, -1) {
			add(m[1])
		}
	}
	return out
}

// shellWords splits a command line as sh would for the simple quoting the docs use.
func shellWords(s string) []string {
	var out []string
	var cur strings.Builder
	quote := byte(0)
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(c)
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == ' ' || c == '\t':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

// TestDocumentedCommandsParse: every cimstream command in the README, the docs and the commands' own
// examples names a command that exists, with flags that exist and values they accept.
func TestDocumentedCommandsParse(t *testing.T) {
	var lines []string
	for _, doc := range []string{"../../README.md", "../../docs/operations.md", "../../docs/validation.md", "../../docs/configuration.md", "../../docs/outbound.md"} {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, docCommandLines(string(data))...)
	}
	root := newRootCommand(nil, nil, nil)
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		lines = append(lines, docCommandLines("```\n"+c.Example+"\n```")...)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	if len(lines) < 30 {
		t.Fatalf("only %d documented command lines found", len(lines))
	}
	placeholder := regexp.MustCompile(`^[A-Z][A-Z|-]+$`)
	checked := 0
lines:
	for _, line := range lines {
		args := shellWords(line)[1:]
		for _, a := range args {
			if placeholder.MatchString(a) {
				continue lines // a synopsis such as cimstream COMMAND --help
			}
		}
		checked++
		root := newRootCommand(nil, nil, nil)
		cmd, rest, err := root.Find(args)
		if err != nil {
			t.Errorf("%q: %v", line, err)
			continue
		}
		if cmd == root && (len(rest) == 0 || !strings.HasPrefix(rest[0], "-")) {
			t.Errorf("%q: names no command", line)
			continue
		}
		cmd.InitDefaultHelpFlag()
		cmd.InitDefaultVersionFlag()
		if err := cmd.ParseFlags(rest); err != nil {
			t.Errorf("%q: %v", line, err)
		}
	}
	if checked < 30 {
		t.Errorf("only %d command lines checked", checked)
	}
}
