package jsonseq

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

type got struct {
	line int
	data string
	bad  bool
}

func readAll(t *testing.T, input string, maxBytes int) []got {
	t.Helper()
	r := NewReader(strings.NewReader(input), maxBytes)
	var out []got
	for i := 0; i < 1000; i++ {
		v, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if v.Err != nil && !errors.Is(v.Err, ErrMalformed) {
			t.Fatalf("value error does not wrap ErrMalformed: %v", v.Err)
		}
		out = append(out, got{v.Line, string(v.Data), v.Err != nil})
	}
	t.Fatal("more than 1000 values")
	return nil
}

func TestSplitting(t *testing.T) {
	cases := map[string]struct {
		input string
		want  []got
	}{
		"empty":           {"", nil},
		"only whitespace": {" \n\n\t\n", nil},
		"one object":      {`{"a":1}`, []got{{1, `{"a":1}`, false}}},
		"ndjson with blank lines": {"{\"a\":1}\n\n{\"b\":\"x}\"}\n", []got{
			{1, `{"a":1}`, false}, {3, `{"b":"x}"}`, false}}},
		"concatenated on one line": {`{"a":1}{"b":2} {"c":3}`, []got{
			{1, `{"a":1}`, false}, {1, `{"b":2}`, false}, {1, `{"c":3}`, false}}},
		"jq pretty output": {"{\n  \"a\": {\n    \"b\": [1, 2]\n  }\n}\n{\n  \"c\": \"d\"\n}\n", []got{
			{1, "{\n  \"a\": {\n    \"b\": [1, 2]\n  }\n}", false}, {6, "{\n  \"c\": \"d\"\n}", false}}},
		"array elements": {"[\n  {\"a\":1},\n  {\"b\":[2]}\n]\n", []got{
			{2, `{"a":1}`, false}, {3, `{"b":[2]}`, false}}},
		"array of scalars": {`[1, "x", true]`, []got{{1, "1", false}, {1, `"x"`, false}, {1, "true", false}}},
		"garbage first line then valid lines": {"garbage here\n{\"a\":1}\n{\"b\":2}\n", []got{
			{1, "garbage here", true}, {2, `{"a":1}`, false}, {3, `{"b":2}`, false}}},
		"two garbage lines are two findings": {"x\ny\n{\"a\":1}", []got{{1, "x", true}, {2, "y", true}, {3, `{"a":1}`, false}}},
		"truncated line then valid line":     {"{\"a\":1\n{\"b\":2}\n", []got{{1, `{"a":1`, true}, {2, `{"b":2}`, false}}},
		"line ends inside a string":          {"{\"a\":\"unterminated\n{\"b\":2}\n", []got{{1, `{"a":"unterminated`, true}, {2, `{"b":2}`, false}}},
		"escaped quote":                      {`{"a":"say \"hi\" }"}`, []got{{1, `{"a":"say \"hi\" }"}`, false}}},
		"broken pretty value skips to the next value": {"{\n  \"a\": \"x\n  \"b\": 2\n}\n{\"c\":3}\n", []got{
			{1, "{\n  \"a\": \"x", true}, {5, `{"c":3}`, false}}},
		"input ends inside a value":  {"{\"a\":1}\n{\"b\":", []got{{1, `{"a":1}`, false}, {2, `{"b":`, true}}},
		"array not closed":           {"[{\"a\":1}", []got{{1, `{"a":1}`, false}, {1, "", true}}},
		"syntax error inside braces": {`{"a":tru}` + "\n{}", []got{{1, `{"a":tru}`, false}, {2, "{}", false}}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			out := readAll(t, c.input, 0)
			if len(out) != len(c.want) {
				t.Fatalf("got %d values %+v, want %+v", len(out), out, c.want)
			}
			for i := range out {
				if out[i] != c.want[i] {
					t.Errorf("value %d: %+v, want %+v", i, out[i], c.want[i])
				}
			}
		})
	}
}

// TestReadsByteByByte: values split across reads come out the same (the reader streams).
func TestReadsByteByByte(t *testing.T) {
	input := "{\"a\":1}\ngarbage\n{\n \"b\": 2\n}\n"
	r := NewReader(iotest.OneByteReader(strings.NewReader(input)), 0)
	var lines []int
	for i := 0; i < 10; i++ {
		v, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, v.Line)
	}
	if len(lines) != 3 || lines[0] != 1 || lines[1] != 2 || lines[2] != 3 {
		t.Fatalf("lines %v, want [1 2 3]", lines)
	}
}

// TestKeepsAtMostMaxBytes: a huge value is measured, not held.
func TestKeepsAtMostMaxBytes(t *testing.T) {
	big := `{"a":"` + strings.Repeat("x", 10000) + `"}`
	r := NewReader(strings.NewReader(big+"\n{}"), 100)
	v, err := r.Next()
	if err != nil || v.Err != nil {
		t.Fatal(err, v.Err)
	}
	if v.Size != len(big) || len(v.Data) != 101 {
		t.Fatalf("size %d (want %d), kept %d (want 101)", v.Size, len(big), len(v.Data))
	}
	if v, err := r.Next(); err != nil || string(v.Data) != "{}" || v.Line != 2 {
		t.Fatalf("next: %+v %v", v, err)
	}
}

// TestReadErrorsSurface: an I/O error is returned, not taken for the end of the input.
func TestReadErrorsSurface(t *testing.T) {
	r := NewReader(iotest.ErrReader(errors.New("disk on fire")), 0)
	if _, err := r.Next(); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("err = %v", err)
	}
}

// FuzzReader: on any input the reader ends (each value consumes input), lines stay within the input, and
// values are never larger than the input.
func FuzzReader(f *testing.F) {
	for _, seed := range []string{"", "{}", "[1,2]", "{\"a\":\"\n{}", "x\n{", "[{\"a\":[", "{\"a\":\"\\\"}\"}\n{}", "]]]}}}"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input string) {
		r := NewReader(strings.NewReader(input), 16)
		lines := strings.Count(input, "\n") + 1
		for i := 0; ; i++ {
			if i > len(input)+1 {
				t.Fatalf("more values than bytes in %q", input)
			}
			v, err := r.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.Line < 1 || v.Line > lines || v.Size > len(input) || len(v.Data) > 17 {
				t.Fatalf("value %+v out of bounds for %q", v, input)
			}
		}
	})
}
