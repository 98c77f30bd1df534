package kafkatest

import "testing"

// TestDecide: with no broker, tests skip; under CIMSTREAM_REQUIRE_KAFKA=1 (make test, CI) they fail.
func TestDecide(t *testing.T) {
	for _, c := range []struct {
		reason             string
		required           bool
		wantSkip, wantFail bool
	}{
		{"", false, false, false},
		{"", true, false, false},
		{"no broker", false, true, false},
		{"no broker", true, false, true},
	} {
		skip, fail := Decide(c.reason, c.required)
		if skip != c.wantSkip || fail != c.wantFail {
			t.Errorf("Decide(%q, %v) = %v, %v", c.reason, c.required, skip, fail)
		}
	}
}
