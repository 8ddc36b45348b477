package main

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// inputFlags are the flags of a command that --cli-input-json and the
// skeletons know, by request field name.
func inputFlags(c *command) []flagSpec {
	var out []flagSpec
	for _, f := range c.flags {
		if f.param != "-" {
			out = append(out, f)
		}
	}
	return out
}

// fillFromInput reads --cli-input-json (or --cli-input-yaml) and sets every
// flag it names that the command line did not give: flags win, as in the
// AWS CLI.
func fillFromInput(p *params) error {
	g := p.global
	flag, src := "cli-input-json", g.inputJSON
	if g.inputYAML != "" {
		flag, src = "cli-input-yaml", g.inputYAML
	}
	if src == "" {
		return nil
	}
	text, err := loadText(flag, src)
	if err != nil {
		return err
	}
	var doc map[string]any
	if flag == "cli-input-json" {
		dec := json.NewDecoder(strings.NewReader(text))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			return paramf("Error parsing parameter '--cli-input-json': Invalid JSON: %v\nJSON received: %s", err, text)
		}
		if dec.More() {
			return paramf("Error parsing parameter '--cli-input-json': Invalid JSON: extra data after the object")
		}
	} else {
		if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
			return paramf("Error parsing parameter '--cli-input-yaml': Invalid YAML: %v", err)
		}
	}
	if doc == nil {
		return paramf("Error parsing parameter '--%s': expected an object of parameters", flag)
	}
	byParam := map[string]flagSpec{}
	var names []string
	for _, f := range inputFlags(p.cmd) {
		n := paramName(f.name, f.flagDef)
		byParam[n] = f
		names = append(names, n)
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f, ok := byParam[k]
		if !ok {
			return validationf("Unknown parameter in input: %q, must be one of: %s", k, strings.Join(names, ", "))
		}
		v := doc[k]
		if v == nil || p.has(f.name) {
			continue
		}
		if err := setFromInput(p, f, k, v); err != nil {
			return err
		}
	}
	return nil
}

// setFromInput sets one flag from a decoded JSON or YAML value. Lists and
// objects go in as the JSON text that the flag also takes on the command
// line, so both ways share one reader.
func setFromInput(p *params, f flagSpec, field string, v any) error {
	typeErr := func(want string) error {
		return validationf("Invalid type for parameter %s, value: %v, type: %T, valid types: %s", field, v, v, want)
	}
	switch f.kind {
	case kindBool:
		b, ok := v.(bool)
		if !ok {
			return typeErr("boolean")
		}
		p.bools[f.name] = b
	case kindInt:
		var s string
		switch n := v.(type) {
		case json.Number:
			s = n.String()
		case int:
			s = strconv.Itoa(n)
		case float64:
			if n != math.Trunc(n) || math.IsInf(n, 0) {
				return typeErr("integer")
			}
			s = strconv.FormatFloat(n, 'f', -1, 64)
		default:
			return typeErr("integer")
		}
		p.values[f.name] = []string{s}
	case kindList, kindMap:
		if _, isString := v.(string); isString && f.kind == kindMap {
			p.values[f.name] = []string{v.(string)}
			return nil
		}
		b, err := json.Marshal(normalizeYAML(v))
		if err != nil {
			return typeErr("list or object")
		}
		p.values[f.name] = []string{string(b)}
	default:
		s, ok := v.(string)
		if !ok {
			return typeErr("string")
		}
		p.values[f.name] = []string{s}
	}
	return nil
}

// normalizeYAML turns YAML's map[string]any (and nested lists) into what
// encoding/json writes.
func normalizeYAML(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = normalizeYAML(e)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[textScalar(k)] = normalizeYAML(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = normalizeYAML(e)
		}
		return out
	}
	return v
}

// skeleton is a command's input template: every field with a placeholder
// (the first allowed value of an enum, as the AWS CLI v2 prints).
func skeleton(c *command) *object {
	o := newObject()
	for _, f := range inputFlags(c) {
		var v any
		switch f.kind {
		case kindBool:
			v = true
		case kindInt:
			v = json.Number("0")
		case kindBlob:
			v = nil
		case kindMap:
			m := newObject()
			m.set("KeyName", "")
			v = m
		case kindList:
			if f.name == "tags" {
				t := newObject()
				t.set("TagKey", "")
				t.set("TagValue", "")
				v = []any{t}
			} else {
				v = []any{""}
			}
		default:
			v = ""
			if len(f.choices) > 0 {
				v = f.choices[0]
			}
		}
		o.set(paramName(f.name, f.flagDef), v)
	}
	return o
}

// printSkeleton prints --generate-cli-skeleton's template.
func printSkeleton(w io.Writer, c *command, form string) error {
	sk := skeleton(c)
	switch form {
	case "yaml-input":
		return writeYAML(w, sk)
	case "output":
		return usagef("argument --generate-cli-skeleton: kmsctl prints input skeletons only (input, yaml-input)")
	}
	var buf bytes.Buffer
	if err := writeJSON(&buf, sk); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}
