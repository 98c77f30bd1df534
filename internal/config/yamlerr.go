package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

var (
	yamlTypeErr    = regexp.MustCompile("^line (\\d+): cannot unmarshal (!!\\w+)(?: `(.*)`)? into (.+)$")
	yamlUnknownErr = regexp.MustCompile(`^line (\d+): field (\S+) not found in type \S+$`)
)

// explainYAMLError rewrites yaml's errors in the file's own terms: each names the line, the dotted key
// (kafka.producer.batchSize, outbound.routes[0].destinations) and, for a value of the wrong type, what the
// key takes in plain words; an unknown key comes with the closest known one.
func explainYAMLError(err error, data []byte) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var doc yaml.Node
	_ = yaml.Unmarshal(data, &doc) // it parsed once already; a type error is not a syntax error
	// yaml's messages name only a line, the line of the value's node: for an alias that is the anchor's,
	// and two values on one line cannot be told apart. Walking the document against the configuration's
	// type names each bad value by the key that uses it, at the line where it is used.
	var msgs []string
	checkNode(&doc, reflect.TypeOf(Config{}), "", 0, &msgs)
	if len(msgs) > 0 {
		return errors.New(strings.Join(msgs, "\n"))
	}
	for _, e := range te.Errors {
		msgs = append(msgs, explainOne(e, &doc))
	}
	return errors.New(strings.Join(msgs, "\n"))
}

// checkNode appends an error for every value under n that yaml cannot decode into t, and every unknown key,
// each naming the dotted key path. at, when not 0, is the line of the alias through which n is used.
func checkNode(n *yaml.Node, t reflect.Type, path string, at int, msgs *[]string) {
	line := n.Line
	if at != 0 {
		line = at
	}
	switch {
	case n.Kind == yaml.DocumentNode:
		for _, c := range n.Content {
			checkNode(c, t, path, at, msgs)
		}
		return
	case n.Kind == yaml.AliasNode:
		if at == 0 {
			at = n.Line
		}
		checkNode(n.Alias, t, path, at, msgs)
		return
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null":
		return // an empty value leaves the default
	}
	wrong := func() {
		key := path
		if key == "" {
			key = "(top level)"
		}
		*msgs = append(*msgs, fmt.Sprintf("line %d: %s: %s is not %s", line, key, describeValue(n.ShortTag(), n.Value), typeWords(t.String())))
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			wrong()
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.ShortTag() == "!!merge" {
				checkNode(v, t, path, at, msgs)
				continue
			}
			f, ok := fieldByTag(t, k.Value)
			if !ok {
				key := joinKey(path, k.Value)
				kline := k.Line
				if at != 0 {
					kline = at
				}
				*msgs = append(*msgs, fmt.Sprintf("line %d: %s is not a known key; the closest is %s (see docs/configuration.md)", kline, key, closest(key, Keys())))
				continue
			}
			checkNode(v, f.Type, joinKey(path, k.Value), at, msgs)
		}
		return
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			wrong()
			return
		}
		for i, c := range n.Content {
			checkNode(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), at, msgs)
		}
		return
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			wrong()
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			checkNode(n.Content[i+1], t.Elem(), joinKey(path, n.Content[i].Value), at, msgs)
		}
		return
	}
	if n.Kind != yaml.ScalarNode || n.Decode(reflect.New(t).Interface()) != nil {
		wrong()
	}
}

// yamlName is the key of a struct field in the file.
func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

// fieldByTag finds the field of struct type t whose yaml name is name.
func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if yamlName(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func explainOne(e string, doc *yaml.Node) string {
	if m := yamlUnknownErr.FindStringSubmatch(e); m != nil {
		line, _ := strconv.Atoi(m[1])
		key := keyAt(doc, line, m[2])
		return fmt.Sprintf("line %d: %s is not a known key; the closest is %s (see docs/configuration.md)", line, key, closest(key, Keys()))
	}
	if m := yamlTypeErr.FindStringSubmatch(e); m != nil {
		line, _ := strconv.Atoi(m[1])
		key := valueAt(doc, line, m[2])
		return fmt.Sprintf("line %d: %s: %s is not %s", line, key, describeValue(m[2], m[3]), typeWords(m[4]))
	}
	return e
}

// describeValue says what the file holds: "many" (quoted), a list, a section.
func describeValue(tag, text string) string {
	switch tag {
	case "!!seq":
		return "a list"
	case "!!map":
		return "a section of keys"
	case "!!str":
		return strconv.Quote(text)
	}
	return text
}

// typeWords names a Go type the way the configuration documentation does.
func typeWords(goType string) string {
	switch {
	case goType == "time.Duration":
		return "a duration such as 500ms or 10s"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "int") || strings.HasPrefix(goType, "uint"):
		return "a whole number"
	case goType == "float64" || goType == "float32":
		return "a number"
	case goType == "string":
		return "a text value"
	case goType == "[]string":
		return "a list of text values, such as [a, b]"
	case strings.HasPrefix(goType, "map["):
		return "a section of name: value pairs"
	case strings.HasPrefix(goType, "[]"):
		return "a list of entries"
	}
	return "a section of keys"
}

// valueAt returns the dotted key whose value of the given tag (!!seq, !!map, a scalar's) starts on line,
// the innermost one.
func valueAt(doc *yaml.Node, line int, tag string) string {
	kind := yaml.ScalarNode
	switch tag {
	case "!!seq":
		kind = yaml.SequenceNode
	case "!!map":
		kind = yaml.MappingNode
	}
	found := ""
	eachPath(doc, func(_, v *yaml.Node, path string) {
		if v.Line == line && v.Kind == kind {
			found = path
		}
	})
	if found == "" {
		return "(top level)"
	}
	return found
}

// keyAt returns the dotted name of the key named name on line.
func keyAt(doc *yaml.Node, line int, name string) string {
	found := name
	eachPath(doc, func(k, _ *yaml.Node, path string) {
		if k != nil && k.Line == line && k.Value == name {
			found = path
		}
	})
	return found
}

// eachPath calls fn for every value in doc with its dotted path (list items as path[i]), depth first;
// k is the value's key node, nil for a list item.
func eachPath(doc *yaml.Node, fn func(k, v *yaml.Node, path string)) {
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := joinKey(path, k.Value)
				fn(k, v, p)
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				fn(nil, c, p)
				walk(c, p)
			}
		}
	}
	walk(doc, "")
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
