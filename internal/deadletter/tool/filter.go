package tool

import (
	"slices"
	"time"
)

// Filter selects dead letters. Empty lists and zero times select everything; within a list any value
// matches, and every non-empty criterion must hold.
type Filter struct {
	Codes        []string // any of the dead letter's codes
	SourceTopics []string
	Pipelines    []string
	IDs          []string // the CIM message id
	// Since and Until bound the dead letter's record timestamp (when cimstream wrote it; the original's
	// for one written before dead letters were stamped so): Since inclusive, Until exclusive.
	Since, Until time.Time
}

// Match says whether l is selected.
func (f Filter) Match(l Letter) bool {
	if len(f.Codes) > 0 && !slices.ContainsFunc(f.Codes, l.HasCode) {
		return false
	}
	if len(f.SourceTopics) > 0 && !slices.Contains(f.SourceTopics, l.SourceTopic) {
		return false
	}
	if len(f.Pipelines) > 0 && !slices.Contains(f.Pipelines, l.Pipeline) {
		return false
	}
	if len(f.IDs) > 0 && (l.MessageID == "" || !slices.Contains(f.IDs, l.MessageID)) {
		return false
	}
	if !f.Since.IsZero() && l.Record.Time.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !l.Record.Time.Before(f.Until) {
		return false
	}
	return true
}
