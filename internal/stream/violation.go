package stream

import "strings"

// Violation is one broken rule, the reason a record is dead-lettered: where (a JSON path such as
// body.buttons[1].payload; empty for the whole record), a stable code, and a sentence for its sender.
type Violation struct {
	Path    string `json:"path"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (v Violation) String() string {
	if v.Path == "" {
		return v.Code + ": " + v.Message
	}
	return v.Path + ": " + v.Code + ": " + v.Message
}

// Violations is every broken rule of a record; empty means valid.
type Violations []Violation

// Error joins the violations, so a non-empty Violations can be returned as an error.
func (vs Violations) Error() string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = v.String()
	}
	return strings.Join(parts, "; ")
}

// Codes returns the distinct codes in order of first appearance.
func (vs Violations) Codes() []string {
	var out []string
	for _, v := range vs {
		seen := false
		for _, c := range out {
			seen = seen || c == v.Code
		}
		if !seen {
			out = append(out, v.Code)
		}
	}
	return out
}
