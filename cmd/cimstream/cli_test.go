package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/help")

// commandPaths lists every command of the tree, e.g. ["", "run", "topics", "topics create", ...].
func commandPaths(root *cobra.Command) []string {
	var out []string
	var walk func(c *cobra.Command, prefix []string)
	walk = func(c *cobra.Command, prefix []string) {
		out = append(out, strings.Join(prefix, " "))
		for _, sub := range c.Commands() {
			if sub.Hidden || sub.Name() == "help" || sub.Name() == "completion" || strings.HasPrefix(sub.Name(), "__") {
				continue
			}
			walk(sub, append(append([]string{}, prefix...), sub.Name()))
		}
	}
	walk(root, nil)
	return out
}

// TestHelpGolden: every command's --help exits 0, prints a description and examples, and matches its
// golden file (go test -run TestHelpGolden -update ./cmd/cimstream rewrites them).
func TestHelpGolden(t *testing.T) {
	paths := commandPaths(newRootCommand(nil, nil, nil))
	if len(paths) < 12 {
		t.Fatalf("only %d commands found: %v", len(paths), paths)
	}
	for _, path := range paths {
		name := strings.ReplaceAll(path, " ", "_")
		if name == "" {
			name = "cimstream"
		}
		t.Run(name, func(t *testing.T) {
			args := append(strings.Fields(path), "--help")
			code, out, errOut := runCLI(t, "", args...)
			if code != 0 || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			if !strings.Contains(out, "Examples:") || !strings.Contains(out, "Usage:") {
				t.Errorf("help lacks examples or usage:\n%s", out)
			}
			golden := filepath.Join("testdata", "help", name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if out != string(want) {
				t.Errorf("help differs from %s (run with -update after checking):\n%s", golden, out)
			}
		})
	}
}

func TestExitCodes(t *testing.T) {
	cases := []struct {
		args   []string
		code   int
		stdout string // substring expected on stdout
		stderr string // substring expected on stderr
	}{
		{args: []string{"--version"}, code: 0, stdout: "cimstream dev\n"},
		{args: []string{"-v"}, code: 0, stdout: "cimstream dev\n"},
		{args: []string{"version"}, code: 0, stdout: "cimstream dev\n"},
		{args: []string{}, code: 0, stdout: "Available Commands:"},
		{args: []string{"help", "run"}, code: 0, stdout: "cimstream run [flags]"},
		{args: []string{"run", "-h"}, code: 0, stdout: "startup.timeout"},
		{args: []string{"config", "keys", "--help"}, code: 0, stdout: "cimstream config keys [flags]"},
		{args: []string{"nonsense"}, code: 2, stderr: `unknown command "nonsense"`},
		{args: []string{"topics", "bogus"}, code: 2, stderr: `unknown command "bogus" for "cimstream topics"`},
		{args: []string{"run", "--no-such-flag"}, code: 2, stderr: "unknown flag: --no-such-flag"},
		{args: []string{"run", "extra"}, code: 2, stderr: "cimstream run --help"},
		{args: []string{"dev", "--port"}, code: 2, stderr: "flag needs an argument: --port"},
		{args: []string{"dev", "--port", "abc"}, code: 2, stderr: "--port"},
		{args: []string{"routes", "test"}, code: 2, stderr: "name at least one message file"},
		{args: []string{"config", "print", "--set", "shutdown.timeout=x"}, code: 1, stderr: "shutdown.timeout"},
		{args: []string{"loadgen"}, code: 2, stderr: "--count or --duration"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, "_"), func(t *testing.T) {
			code, out, errOut := runCLI(t, "", c.args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstdout %s\nstderr %s", code, c.code, out, errOut)
			}
			if !strings.Contains(out, c.stdout) || !strings.Contains(errOut, c.stderr) {
				t.Fatalf("stdout %q (want %q)\nstderr %q (want %q)", out, c.stdout, errOut, c.stderr)
			}
		})
	}
}

// TestFlagsAfterArguments: flags may come anywhere on the line, as with every cobra tool.
func TestFlagsAfterArguments(t *testing.T) {
	good := filepath.Join(t.TempDir(), "good.json")
	if err := os.WriteFile(good, []byte(validInbound), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "", "validate", good, "--format", "json")
	if code != 0 || !strings.Contains(out, `"valid":true`) {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "", "config", "print", "--set", "topics.partitions=7", "--log-level", "debug")
	if code != 0 || !strings.Contains(out, "partitions: 7") || !strings.Contains(out, "level: debug") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	// --set takes values holding commas whole (a StringSlice would split them).
	code, out, errOut = runCLI(t, "", "config", "print", "--set", "outbound.channels=web=web,41445556677=whatsapp")
	if code != 0 || !strings.Contains(out, `"41445556677": whatsapp`) {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestCompletionScripts: cobra's completion command generates a script for each shell, and flag values
// complete (configuration keys for --set, the formats of validate).
func TestCompletionScripts(t *testing.T) {
	for shell, marker := range map[string]string{"bash": "__start_cimstream", "zsh": "#compdef cimstream", "fish": "complete -c cimstream", "powershell": "Register-ArgumentCompleter"} {
		code, out, errOut := runCLI(t, "", "completion", shell)
		if code != 0 || !strings.Contains(out, marker) {
			t.Errorf("%s: exit %d, stderr %q, script lacks %q", shell, code, errOut, marker)
		}
	}
	code, out, _ := runCLI(t, "", "__complete", "config", "print", "--set", "kafka.sasl.mech")
	if code != 0 || !strings.Contains(out, "kafka.sasl.mechanism=") {
		t.Errorf("--set completion: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "", "__complete", "validate", "--format", "")
	if code != 0 || !strings.Contains(out, "json") || !strings.Contains(out, "text") {
		t.Errorf("--format completion: exit %d\n%s", code, out)
	}
}

// TestEveryCommandTakesTheCommonFlags: --config and --set mean the same on every command, loadgen included.
func TestEveryCommandTakesTheCommonFlags(t *testing.T) {
	root := newRootCommand(nil, nil, nil)
	for _, path := range commandPaths(root) {
		cmd, _, err := root.Find(strings.Fields(path))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{flagConfig, flagSet, flagBrokers, flagLogLevel, flagLogFormat} {
			if cmd.Flags().Lookup(name) == nil && cmd.InheritedFlags().Lookup(name) == nil && cmd.PersistentFlags().Lookup(name) == nil {
				t.Errorf("%q lacks --%s", path, name)
			}
		}
	}
}
