package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts every environment variable that overrides a key: kafka.brokers → CIMSTREAM_KAFKA_BROKERS.
const EnvPrefix = "CIMSTREAM_"

// Load builds the effective configuration: defaults, then the YAML file (when path is not empty), then
// the environment, then the settings (key=value, as given by --set and the shorthand flags), then validation.
// Each error names the key and the problem.
func Load(path string, environ []string, settings []string) (Config, error) {
	cfg := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("config file: %w", err)
		}
		if err := decodeYAML(data, &cfg); err != nil {
			return cfg, fmt.Errorf("config file %s: %w", path, err)
		}
	}
	if err := applyEnv(&cfg, environ); err != nil {
		return cfg, err
	}
	for _, s := range settings {
		key, value, ok := strings.Cut(s, "=")
		if !ok {
			return cfg, fmt.Errorf("setting %q: expected key=value", s)
		}
		if err := Set(&cfg, strings.TrimSpace(key), value); err != nil {
			return cfg, err
		}
	}
	if err := cfg.resolveSecrets(); err != nil {
		return cfg, err
	}
	cfg.normalize()
	return cfg, cfg.Validate()
}

func decodeYAML(data []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true) // a misspelt key is an error, not a silently ignored setting
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return explainYAMLError(err, data)
	}
	return nil
}

// normalize accepts the spellings other tools use: Kafka writes SASL mechanisms in upper case (SCRAM-SHA-512).
func (c *Config) normalize() {
	c.Kafka.SASL.Mechanism = strings.ToLower(strings.TrimSpace(c.Kafka.SASL.Mechanism))
}

func (c *Config) resolveSecrets() error {
	if f := c.Kafka.SASL.PasswordFile; f != "" {
		data, err := os.ReadFile(f)
		if err != nil {
			return fieldErr("kafka.sasl.passwordFile", "cannot read: %v", err)
		}
		c.Kafka.SASL.Password = strings.TrimRight(string(data), "\r\n")
	}
	for i, w := range c.Egress.Webhooks {
		if w.SecretFile == "" {
			continue // Validate names the missing key
		}
		data, err := os.ReadFile(w.SecretFile)
		if err != nil {
			return fieldErr(fmt.Sprintf("egress.webhooks[%d].secretFile", i), "cannot read: %v", err)
		}
		secret := bytes.TrimRight(data, "\r\n")
		if len(secret) == 0 {
			return fieldErr(fmt.Sprintf("egress.webhooks[%d].secretFile", i), "%s is empty", w.SecretFile)
		}
		c.Egress.Webhooks[i].Secret = secret
	}
	return nil
}

// field is one settable key found by walking the struct's yaml tags.
type field struct {
	key    string
	value  reflect.Value
	secret bool
}

func fields(cfg *Config) []field {
	var out []field
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			key := joinKey(prefix, yamlName(sf))
			fv := v.Field(i)
			if fv.Kind() == reflect.Struct {
				walk(key, fv)
				continue
			}
			out = append(out, field{key: key, value: fv, secret: sf.Tag.Get("secret") == "true"})
		}
	}
	walk("", reflect.ValueOf(cfg).Elem())
	return out
}

// Keys lists every dotted key, for documentation and error messages.
func Keys() []string {
	cfg := Default()
	var keys []string
	for _, f := range fields(&cfg) {
		keys = append(keys, f.key)
	}
	return keys
}

// Set assigns one key from its text form: durations as 500ms or 10s, lists comma-separated,
// maps as k=v pairs separated by commas.
func Set(cfg *Config, key, value string) error {
	for _, f := range fields(cfg) {
		if f.key == key {
			return setValue(f, value)
		}
	}
	return &FieldError{Key: key, Problem: fmt.Sprintf("not a known key; the closest is %s (see docs/configuration.md)", closest(key, Keys()))}
}

var durationType = reflect.TypeOf(time.Duration(0))

func setValue(f field, text string) error {
	v := f.value
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(strings.TrimSpace(text))
		if err != nil {
			return fieldErr(f.key, "%q is not a duration such as 500ms or 10s", text)
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(text)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(text))
		if err != nil {
			return fieldErr(f.key, "%q is not true or false", text)
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int || v.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(strings.TrimSpace(text), 10, 64)
		if err != nil {
			return fieldErr(f.key, "%q is not a whole number", text)
		}
		v.SetInt(n)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		var list []string
		for _, s := range strings.Split(text, ",") {
			if s = strings.TrimSpace(s); s != "" {
				list = append(list, s)
			}
		}
		v.Set(reflect.ValueOf(list))
	case v.Kind() == reflect.Map && v.Type().Key().Kind() == reflect.String && v.Type().Elem().Kind() == reflect.String:
		m := map[string]string{}
		for _, pair := range strings.Split(text, ",") {
			if pair = strings.TrimSpace(pair); pair == "" {
				continue
			}
			k, val, ok := strings.Cut(pair, "=")
			if !ok {
				return fieldErr(f.key, "%q is not key=value", pair)
			}
			m[strings.TrimSpace(k)] = strings.TrimSpace(val)
		}
		v.Set(reflect.ValueOf(m))
	default:
		return fieldErr(f.key, "can only be set in the config file")
	}
	return nil
}

// Masked returns a copy with every secret replaced, for printing and logging.
func (c Config) Masked() Config {
	out := c
	out.Outbound.Channels = maps.Clone(c.Outbound.Channels)
	out.Channels = maps.Clone(c.Channels)
	for _, f := range fields(&out) {
		if f.secret && f.value.String() != "" {
			f.value.SetString("********")
		}
	}
	return out
}

// YAML renders the configuration with secrets masked.
func (c Config) YAML() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c.Masked()); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
