package cim_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/cimstream/cimstream/pkg/cim"
)

const schemaBase = "https://schemas.cimstream.dev/cim/v1/"

// compileSchemas loads schemas/*.schema.json (the files non-Go connectors use) under their $ids.
func compileSchemas(t testing.TB) map[cim.Direction]*jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	files, err := filepath.Glob("../../schemas/*.schema.json")
	if err != nil || len(files) != 4 {
		t.Fatalf("want 4 schema files, found %v (%v)", files, err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := c.AddResource(schemaBase+filepath.Base(f), doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	out := map[cim.Direction]*jsonschema.Schema{}
	for dir, name := range map[cim.Direction]string{cim.Inbound: "inbound", cim.Outbound: "outbound"} {
		s, err := c.Compile(schemaBase + name + ".schema.json")
		if err != nil {
			t.Fatalf("compile %s: %v", name, err)
		}
		out[dir] = s
	}
	return out
}

// TestSchemasAgreeWithValidator runs every corpus case through the Go validator and the JSON Schema of
// its direction: both must call it valid, or both invalid. Cases about size, depth or JSON syntax are
// outside what a schema can express and are left out.
func TestSchemasAgreeWithValidator(t *testing.T) {
	schemas := compileSchemas(t)
	compared := 0
	for _, c := range loadCorpus(t) {
		dir := c.direction(t)
		m, err := cim.Decode(c.bytes())
		if err != nil {
			continue
		}
		goValid := len(cim.Validate(m, dir)) == 0
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(c.bytes()))
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		schemaErr := schemas[dir].Validate(doc)
		if goValid != (schemaErr == nil) {
			t.Errorf("%s (%s): Go says valid=%v, schema says %v", c.Name, c.file, goValid, schemaErr)
		}
		compared++
	}
	if compared < 150 {
		t.Fatalf("only %d cases compared", compared)
	}
	t.Logf("%d corpus cases compared", compared)
}
