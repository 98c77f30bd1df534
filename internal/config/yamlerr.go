package config

import (
	"errors"
	"fmt"
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
	var msgs []string
	for _, e := range te.Errors {
		msgs = append(msgs, explainOne(e, &doc))
	}
	return errors.New(strings.Join(msgs, "\n"))
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
				if v.Line == line && v.Kind == kind {
					found = p
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				if c.Line == line && c.Kind == kind {
					found = p
				}
				walk(c, p)
			}
		}
	}
	walk(doc, "")
	if found == "" {
		return "(top level)"
	}
	return found
}

// keyAt returns the dotted name of the key named name on line.
func keyAt(doc *yaml.Node, line int, name string) string {
	found := name
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
				if k.Line == line && k.Value == name {
					found = p
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	walk(doc, "")
	return found
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
