package jsonseq

import (
	"encoding/json"
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

// indent0 is a message as Python's json.dumps(m, indent=0) writes it: 15 lines, every one in column 0.
const indent0 = `{
"id": "m-1",
"header": {
"sender": {
"id": "c"
}
},
"body": {
"buttons": [
{
"text": "a"
}
]
}
}`

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
			{1, "{\n  \"a\": \"x\n  \"b\": 2\n}", true}, {5, `{"c":3}`, false}}},
		"input ends inside a value":  {"{\"a\":1}\n{\"b\":", []got{{1, `{"a":1}`, false}, {2, `{"b":`, true}}},
		"array not closed":           {"[{\"a\":1}", []got{{1, `{"a":1}`, false}, {1, "", true}}},
		"syntax error inside braces": {`{"a":tru}` + "\n{}", []got{{1, `{"a":tru}`, true}, {2, "{}", false}}},
		"value cut after a colon, next at column 0": {"{\"a\":\n{\"b\":2}\n{\"c\":3}\n", []got{
			{1, `{"a":`, true}, {2, `{"b":2}`, false}, {3, `{"c":3}`, false}}},

		// One broken element of a top-level array: the elements after it are still read, the array
		// closes where it does, and nothing else is reported.
		"broken element keeps the elements after it": {"[\n  {\"a\": 1},\n  {\"b\": 2,\n  {\"c\": 3},\n  {\"d\": 4}\n]\n", []got{
			{2, `{"a": 1}`, false}, {3, `{"b": 2,`, true}, {4, `{"c": 3}`, false}, {5, `{"d": 4}`, false}}},
		"element with mismatched brackets": {"[\n  {\"b\": [2},\n  {\"c\": 3}\n]", []got{
			{2, `{"b": [2},`, true}, {3, `{"c": 3}`, false}}},
		"last element cut short": {"[\n  {\"a\": 1},\n  {\"b\": 2\n]\n{\"c\": 3}\n", []got{
			{2, `{"a": 1}`, false}, {3, `{"b": 2`, true}, {5, `{"c": 3}`, false}}},
		"element cut after a bracket": {"[\n  {\"b\": [\n  {\"c\": 3}\n]", []got{
			{2, `{"b": [`, true}, {3, `{"c": 3}`, false}}},
		// A string cut at the end of its line: the leftover }, , and ] belong to the broken element.
		"element with a string cut at the end of a line": {"[\n  {\"a\": \"cut\n  },\n  {\"b\": 2}\n]\n", []got{
			{2, "{\"a\": \"cut\n  }", true}, {4, `{"b": 2}`, false}}},
		"one-line array, string cut": {"[{\"a\": \"cut\n},\n{\"b\": 2}]", []got{
			{1, "{\"a\": \"cut\n}", true}, {3, `{"b": 2}`, false}}},

		// Python's json.dumps(m, indent=0): nested values start in column 0 and are no new message.
		"indent 0 object": {indent0 + "\n" + indent0 + "\n", []got{{1, indent0, false}, {16, indent0, false}}},
		"indent 0 array":  {"[\n" + indent0 + ",\n" + indent0 + "\n]\n", []got{{2, indent0, false}, {17, indent0, false}}},

		// A byte order mark (Windows editors write one) is no part of the first message.
		"byte order mark":          {"\uFEFF{\"a\":1}\n{\"b\":2}\n", []got{{1, `{"a":1}`, false}, {2, `{"b":2}`, false}}},
		"byte order mark, array":   {"\uFEFF[{\"a\":1}]", []got{{1, `{"a":1}`, false}}},
		"byte order mark, garbage": {"\uFEFFx\n{}", []got{{1, "x", true}, {2, "{}", false}}},

		// A truncated line does not swallow the next one when that one is indented.
		"truncated line then indented line": {"{\"a\":1\n  {\"b\":2}\n", []got{{1, `{"a":1`, true}, {2, `{"b":2}`, false}}},
		"string cut then indented line":     {"{\"a\":\"x\n\t{\"b\":2}\n", []got{{1, `{"a":"x`, true}, {2, `{"b":2}`, false}}},
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

// layouts are the ways a message is written: NDJSON, `jq .`, Python's indent=0.
func layouts(t *testing.T, m string) map[string]string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(m), &v); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for name, indent := range map[string]string{"compact": "", "jq": "  ", "indent 0": "\n"} {
		var b []byte
		var err error
		switch indent {
		case "":
			b, err = json.Marshal(v)
		case "\n": // indent=0: a line per member and element, nothing indented
			b, err = json.MarshalIndent(v, "", "")
		default:
			b, err = json.MarshalIndent(v, "", indent)
		}
		if err != nil {
			t.Fatal(err)
		}
		out[name] = string(b)
	}
	return out
}

const nested = `{"id":"m-1","header":{"sender":{"id":"c","type":"CONNECTOR"},"tags":[{"k":"a"},{"k":"b","v":[1,2.5e3,-0.1,true,null]}]},"body":{"type":"PLAIN","text":"say \"hi\" \\ \u00e9 [not a bracket] {nor this}"}}`

// TestValidMessagesAreNeverSplitNorLost: messages in every layout, one after another or as the elements
// of an array, come out exactly, each with its line.
func TestValidMessagesAreNeverSplitNorLost(t *testing.T) {
	for name, m := range layouts(t, nested) {
		lines := strings.Count(m, "\n") + 1
		seq := readAll(t, m+"\n"+m+"\n"+m, 0)
		want := []got{{1, m, false}, {1 + lines, m, false}, {1 + 2*lines, m, false}}
		if !equal(seq, want) {
			t.Errorf("%s, one after another: %+v", name, seq)
		}
		arr := readAll(t, "[\n"+m+",\n"+m+"\n]\n", 0)
		if !equal(arr, []got{{2, m, false}, {2 + lines, m, false}}) {
			t.Errorf("%s, in an array: %+v", name, arr)
		}
	}
}

// TestTruncatedMessageThenMessage: a message cut anywhere, then the next message on the next line, in
// every layout, alone or as elements of an array (in column 0 or indented): the cut one is one finding on
// its first line, and the next is read whole with its line; nothing else is reported.
func TestTruncatedMessageThenMessage(t *testing.T) {
	for name, m := range layouts(t, nested) {
		for cut := 1; cut < len(m); cut++ {
			head := strings.TrimRight(m[:cut], " \n")
			input := head + "\n" + m + "\n"
			out := readAll(t, input, 0)
			if len(out) != 2 || !out[0].bad || out[0].line != 1 || out[1] != (got{strings.Count(head, "\n") + 2, m, false}) {
				t.Fatalf("%s cut at %d:\n%s\ngot %+v", name, cut, input, out)
			}
		}
		for _, indent := range []string{"", "  "} {
			e := indent + strings.ReplaceAll(m, "\n", "\n"+indent)
			for cut := len(indent) + 1; cut < len(e); cut++ {
				head := strings.TrimRight(e[:cut], " \n")
				input := "[\n" + e + ",\n" + head + "\n" + e + "\n]\n"
				out := readAll(t, input, 0)
				line := 2 + strings.Count(e, "\n") + 1
				want := []got{{2, m, false}, {line, "", true}, {line + strings.Count(head, "\n") + 1, m, false}}
				if len(out) == 3 {
					out[1].data = ""
				}
				if indent == "" && !equal(out, want) || indent != "" && (len(out) != 3 || out[0].bad || out[0].line != 2 || !out[1].bad || out[1].line != line || out[2].bad || out[2].line != want[2].line) {
					t.Fatalf("%s in an array, indent %q, cut at %d:\n%s\ngot %+v", name, indent, cut, input, out)
				}
			}
		}
	}
}

func equal(a, b []got) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
