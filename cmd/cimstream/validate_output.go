package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// findingWriter prints validate's results in one output format.
type findingWriter interface {
	result(r validateResult) error
}

var findingWriters = map[string]func(io.Writer) findingWriter{
	"text":   func(w io.Writer) findingWriter { return textFindings{w} },
	"json":   func(w io.Writer) findingWriter { return jsonFindings{json.NewEncoder(w)} },
	"github": func(w io.Writer) findingWriter { return githubFindings{w} },
}

// textFindings: FILE:LINE: PATH: CODE: MESSAGE (id=ID), one line per violation, as compilers print them.
type textFindings struct{ w io.Writer }

func (t textFindings) result(r validateResult) error {
	id := ""
	if r.ID != "" {
		id = " (id=" + r.ID + ")"
	}
	if r.Valid {
		_, err := fmt.Fprintf(t.w, "%s:%d: valid%s\n", r.Source, r.Line, id)
		return err
	}
	for _, v := range r.Violations {
		path := v.Path
		switch {
		case v.Code == codeUnreadable:
			path = "(file)"
		case path == "":
			path = "(message)"
		}
		if _, err := fmt.Fprintf(t.w, "%s:%d: %s: %s: %s%s\n", r.Source, r.Line, path, v.Code, v.Message, id); err != nil {
			return err
		}
	}
	return nil
}

// jsonFindings: one validateResult per line.
type jsonFindings struct{ enc *json.Encoder }

func (j jsonFindings) result(r validateResult) error { return j.enc.Encode(r) }

// githubFindings: workflow commands that GitHub Actions shows as annotations on the file and line.
type githubFindings struct{ w io.Writer }

func (g githubFindings) result(r validateResult) error {
	if r.Valid {
		return nil
	}
	for _, v := range r.Violations {
		msg := v.Message
		if v.Path != "" {
			msg = v.Path + ": " + msg
		}
		line := fmt.Sprintf(",line=%d", r.Line)
		if r.Line == 0 { // the file itself: an annotation on the file
			line = ""
		}
		if _, err := fmt.Fprintf(g.w, "::error file=%s%s,title=%s::%s\n", ghProperty(r.Source), line,
			ghProperty("cimstream validate: "+v.Code), ghData(msg)); err != nil {
			return err
		}
	}
	return nil
}

// ghData and ghProperty escape as GitHub's workflow commands require.
func ghData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

func ghProperty(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}
