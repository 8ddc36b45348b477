package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// jsonIndent is the AWS CLI's: it prints with json.dumps(indent=4).
const jsonIndent = "    "

// printResult prints a command's answer in the chosen output format, after
// applying --query. A nil answer (AWS's empty responses) prints nothing.
// Text and table output leave out raftkms's extension fields (unless the
// query names them), so their columns are the AWS CLI's.
func printResult(w io.Writer, result any, g *globals) error {
	if result == nil {
		return nil
	}
	if !g.hasQuery && g.output == "json" {
		return writeJSON(w, result)
	}
	var q *compiledQuery
	if g.hasQuery {
		var err error
		if q, err = compileQuery(g.query); err != nil {
			return usagef("argument --query: Bad value for --query %s: %v", g.query, err)
		}
	}
	if g.output == "text" || g.output == "table" {
		var keep map[string]bool
		if q != nil {
			keep = q.fields
		}
		result = withoutExtensions(result, keep)
	}
	v, err := toValue(result)
	if err != nil {
		return err
	}
	if q != nil {
		if v, err = q.eval(v); err != nil {
			return otherf("Bad value for --query %s: %v", g.query, err)
		}
	}
	switch g.output {
	case "text":
		var b strings.Builder
		formatText(&b, v, "", nil)
		_, err := io.WriteString(w, b.String())
		return err
	case "table":
		_, err := io.WriteString(w, formatTable(v, g.operation, terminalWidth()))
		return err
	case "yaml":
		return writeYAML(w, v)
	case "yaml-stream":
		// kmsctl gathers every page before it prints, so the stream has one
		// item: the whole answer.
		return writeYAML(w, []any{v})
	}
	return writeJSON(w, v)
}

func writeJSON(w io.Writer, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // as Python's json.dumps, which the AWS CLI uses
	enc.SetIndent("", jsonIndent)
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// object is a JSON object that keeps its keys in order, so that --query
// results print their fields in AWS order.
type object struct {
	keys []string
	vals map[string]any
}

func (o *object) get(k string) (any, bool) {
	v, ok := o.vals[k]
	return v, ok
}

func (o *object) set(k string, v any) {
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.vals[k] = v
}

func newObject() *object { return &object{vals: map[string]any{}} }

func (o *object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		b.Write(kb)
		b.WriteByte(':')
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(o.vals[k]); err != nil {
			return nil, err
		}
		b.Truncate(b.Len() - 1) // Encode's newline
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// toValue turns an answer into generic JSON values (*object, []any, string,
// json.Number, bool, nil) for --query and text output.
func toValue(result any) (any, error) {
	raw, err := json.Marshal(result)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return decodeValue(dec)
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			o := newObject()
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				o.set(k, v)
			}
			_, err := dec.Token() // '}'
			return o, err
		case '[':
			list := []any{}
			for dec.More() {
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				list = append(list, v)
			}
			_, err := dec.Token() // ']'
			return list, err
		}
		return nil, fmt.Errorf("unexpected %v", t)
	default:
		return t, nil
	}
}

// formatText writes v in the AWS CLI's text format: a scalar on its own
// line; a list of scalars tab-separated; an object's scalar fields
// tab-separated in key order (after the uppercased name of the field that
// holds it), then its lists and objects, each under its own name; a list of
// objects one line per object, with the union of their scalar fields.
func formatText(w *strings.Builder, v any, ident string, scalarKeys []string) {
	switch t := v.(type) {
	case *object:
		formatTextObject(w, t, ident, scalarKeys)
	case []any:
		formatTextList(w, t, ident)
	default:
		w.WriteString(textScalar(v))
		w.WriteByte('\n')
	}
}

func formatTextList(w *strings.Builder, list []any, ident string) {
	if len(list) == 0 {
		return
	}
	var hasObject, hasList bool
	for _, e := range list {
		switch e.(type) {
		case *object:
			hasObject = true
		case []any:
			hasList = true
		}
	}
	switch {
	case hasObject:
		keys := allScalarKeys(list)
		for _, e := range list {
			formatText(w, e, ident, keys)
		}
	case hasList:
		var scalars, others []any
		for _, e := range list {
			if isScalar(e) {
				scalars = append(scalars, e)
			} else {
				others = append(others, e)
			}
		}
		if len(scalars) > 0 {
			formatScalarList(w, scalars, ident)
		}
		for _, e := range others {
			formatText(w, e, ident, nil)
		}
	default:
		formatScalarList(w, list, ident)
	}
}

func formatScalarList(w *strings.Builder, list []any, ident string) {
	if ident != "" {
		for _, e := range list {
			fmt.Fprintf(w, "%s\t%s\n", strings.ToUpper(ident), textScalar(e))
		}
		return
	}
	parts := make([]string, len(list))
	for i, e := range list {
		parts[i] = textScalar(e)
	}
	w.WriteString(strings.Join(parts, "\t"))
	w.WriteByte('\n')
}

func formatTextObject(w *strings.Builder, o *object, ident string, scalarKeys []string) {
	var scalars []string
	type named struct {
		name string
		v    any
	}
	var nested []named
	if scalarKeys == nil {
		keys := append([]string(nil), o.keys...)
		sort.Strings(keys)
		for _, k := range keys {
			if v := o.vals[k]; isScalar(v) {
				scalars = append(scalars, textScalar(v))
			} else {
				nested = append(nested, named{k, v})
			}
		}
	} else {
		isKey := map[string]bool{}
		for _, k := range scalarKeys {
			isKey[k] = true
			v, ok := o.get(k)
			if !ok {
				scalars = append(scalars, "")
				continue
			}
			scalars = append(scalars, textScalar(v))
		}
		var rest []string
		for _, k := range o.keys {
			if !isKey[k] {
				rest = append(rest, k)
			}
		}
		sort.Strings(rest)
		for _, k := range rest {
			nested = append(nested, named{k, o.vals[k]})
		}
	}
	if len(scalars) > 0 {
		if ident != "" {
			scalars = append([]string{strings.ToUpper(ident)}, scalars...)
		}
		w.WriteString(strings.Join(scalars, "\t"))
		w.WriteByte('\n')
	}
	for _, n := range nested {
		formatText(w, n.v, n.name, nil)
	}
}

// allScalarKeys is the sorted union of the scalar fields of the objects in
// a list, so that their lines have the same columns.
func allScalarKeys(list []any) []string {
	seen := map[string]bool{}
	for _, e := range list {
		if o, ok := e.(*object); ok {
			for _, k := range o.keys {
				if isScalar(o.vals[k]) {
					seen[k] = true
				}
			}
		}
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func isScalar(v any) bool {
	switch v.(type) {
	case *object, []any:
		return false
	}
	return true
}

// textScalar prints a scalar as the AWS CLI (Python's str) does.
func textScalar(v any) string {
	switch t := v.(type) {
	case nil:
		return "None"
	case bool:
		if t {
			return "True"
		}
		return "False"
	case string:
		return t
	case json.Number:
		return t.String()
	}
	return fmt.Sprint(v)
}
