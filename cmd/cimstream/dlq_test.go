package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/deadletter/tool"
)

// execDLQ runs newDLQCommand with args and a loader returning cfg (or failing the test when
// called with loaderMustNotRun).
func execDLQ(t *testing.T, load func(*cobra.Command) (config.Config, error), args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newDLQCommand(load)
	var out, errOut bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err = cmd.Execute()
	return out.String(), errOut.String(), err
}

// dlqExitCode maps a dlq command's error to its exit status: 0 done, 2 usage, 1 anything else.
func dlqExitCode(err error) int {
	var u usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &u):
		return 2
	}
	return 1
}

func TestDLQUsageErrorsNameTheFlag(t *testing.T) {
	loaded := false
	load := func(*cobra.Command) (config.Config, error) {
		loaded = true
		return config.Config{}, errors.New("no configuration in this test")
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"inspect", "--since", "yesterday"}, "--since"},
		{[]string{"replay", "--until", "-5h"}, "--until"},
		{[]string{"inspect", "--since", "1h", "--until", "2h"}, "--since"},
		{[]string{"replay", "--pipeline", "sideways"}, "--pipeline"},
		{[]string{"replay", "--max-replays", "0"}, "--max-replays"},
		{[]string{"replay", "--to", ""}, "--to"},
		{[]string{"replay", "--code", ","}, "--code"},
		{[]string{"inspect", "--format", "yaml"}, "--format"},
		{[]string{"inspect", "--bogus"}, "--bogus"},
		{[]string{"replay", "extra"}, "extra"},
		{[]string{"nothing"}, "nothing"},
	}
	for _, c := range cases {
		_, _, err := execDLQ(t, load, c.args...)
		if code := dlqExitCode(err); code != 2 {
			t.Errorf("%v: exit %d (%v), want 2", c.args, code, err)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %q does not name %s", c.args, err, c.want)
		}
	}
	if loaded {
		t.Error("the configuration was loaded although the command line was wrong")
	}
	def := func(*cobra.Command) (config.Config, error) { return config.Default(), nil }
	if _, _, err := execDLQ(t, def, "replay", "--to", "cimstream.dlq"); dlqExitCode(err) != 2 || !strings.Contains(err.Error(), "--to") {
		t.Errorf("--to the dead-letter topic: %v", err)
	}
	// A configuration error is not a usage error.
	_, _, err := execDLQ(t, load, "inspect")
	if code := dlqExitCode(err); code != 1 || !loaded {
		t.Errorf("configuration error: exit %d (%v), want 1", code, err)
	}
}

func TestDLQHelpHasDescriptionAndExamples(t *testing.T) {
	for _, sub := range []string{"inspect", "replay"} {
		out, _, err := execDLQ(t, nil, sub, "--help")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"Examples:", "cimstream dlq " + sub, "Exit status", "--source-topic", "--since"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s --help lacks %q", sub, want)
			}
		}
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 5, 10, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                     {},
		"2h":                   now.Add(-2 * time.Hour),
		"7d":                   now.Add(-7 * 24 * time.Hour),
		"2026-05-01T00:00:00Z": time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC),
	} {
		got, err := parseDLQWhen("--since", in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
}

func TestProgressLineOnlyOnATerminal(t *testing.T) {
	var buf bytes.Buffer
	p := newDLQProgressLine(&buf) // not a terminal
	p.show(tool.Progress{Records: 1, Total: 1})
	p.clear()
	if buf.Len() != 0 {
		t.Errorf("progress written to a non-terminal: %q", buf.String())
	}
	p = &dlqProgressLine{w: &buf, on: true}
	p.show(tool.Progress{Records: 5, Total: 10, Account: tool.Account{Replayed: 3, Filtered: 2}})
	p.show(tool.Progress{Records: 6, Total: 10}) // within 200 ms: skipped
	if got := buf.String(); strings.Count(got, "\r") != 1 || !strings.Contains(got, "5/10 records read: replayed 3") {
		t.Errorf("progress %q", got)
	}
	p.show(tool.Progress{Records: 10, Total: 10}) // the last one is always shown
	p.clear()
	if got := buf.String(); !strings.Contains(got, "10/10") || !strings.HasSuffix(got, "\r\033[K") {
		t.Errorf("progress %q: want the final count and the line cleared", got)
	}
}

// A filter flag given an empty value parses to no filter at all; it must not widen the selection to
// every dead letter (a replay of everything), but be refused naming the flag.
func TestDLQEmptyFilterValueIsAUsageError(t *testing.T) {
	loaded := false
	load := func(*cobra.Command) (config.Config, error) {
		loaded = true
		return config.Default(), nil
	}
	cases := []struct {
		args []string
		flag string
	}{
		{[]string{"replay", "--code="}, "--code"},
		{[]string{"replay", "--code", ""}, "--code"},
		{[]string{"replay", "--id="}, "--id"},
		{[]string{"replay", "--id", ""}, "--id"},
		{[]string{"replay", "--source-topic", ""}, "--source-topic"},
		{[]string{"replay", "--pipeline="}, "--pipeline"},
		{[]string{"replay", "--since="}, "--since"},
		{[]string{"inspect", "--until", ""}, "--until"},
		{[]string{"inspect", "--code="}, "--code"},
		{[]string{"inspect", "--id", ""}, "--id"},
	}
	for _, c := range cases {
		_, _, err := execDLQ(t, load, c.args...)
		if code := dlqExitCode(err); code != 2 {
			t.Errorf("%v: exit %d (%v), want 2", c.args, code, err)
			continue
		}
		if !strings.Contains(err.Error(), c.flag+": empty value") {
			t.Errorf("%v: error %q does not name %s", c.args, err, c.flag)
		}
	}
	if loaded {
		t.Error("the configuration was loaded although a filter flag was empty")
	}
}
