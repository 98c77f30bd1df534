package main

import (
	"strings"
	"testing"
)

func TestHelpForAnUnknownTopicIsAUsageError(t *testing.T) {
	for _, args := range [][]string{{"help", "bogus"}, {"help", "topics", "bogus"}} {
		code, _, errOut := runCLI(t, "", args...)
		if code != 2 || !strings.Contains(errOut, "bogus") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
	if code, out, _ := runCLI(t, "", "help", "topics", "check"); code != 0 || !strings.Contains(out, "cimstream topics check [flags]") {
		t.Errorf("help topics check: exit %d\n%s", code, out)
	}
}
