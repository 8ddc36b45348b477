package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The nodes of a --query expression and how they evaluate, over the values
// toValue makes (*object, []any, string, json.Number, bool, nil). As in
// JMESPath, asking for something that is not there gives null, not an error.

type identity struct{}

func (identity) eval(v any) (any, error) { return v, nil }

type field string

func (f field) eval(v any) (any, error) {
	if o, ok := v.(*object); ok {
		x, _ := o.get(string(f))
		return x, nil
	}
	return nil, nil
}

// sub applies right to the result of left.
type sub struct{ left, right node }

func (s sub) eval(v any) (any, error) {
	l, err := s.left.eval(v)
	if err != nil || l == nil {
		return nil, err
	}
	return s.right.eval(l)
}

type index struct {
	left node
	i    int
}

func (n index) eval(v any) (any, error) {
	l, err := n.left.eval(v)
	if err != nil {
		return nil, err
	}
	list, ok := l.([]any)
	if !ok {
		return nil, nil
	}
	i := n.i
	if i < 0 {
		i += len(list)
	}
	if i < 0 || i >= len(list) {
		return nil, nil
	}
	return list[i], nil
}

// projection applies right to each element of left's list (or of an
// object's values, or of the flattened list, or of the elements passing a
// filter), dropping nulls.
type projection struct {
	kind        string // list, flatten, filter, values
	left, right node
	cond        node // filter only
}

func (p projection) eval(v any) (any, error) {
	l, err := p.left.eval(v)
	if err != nil {
		return nil, err
	}
	var elems []any
	switch p.kind {
	case "values":
		o, ok := l.(*object)
		if !ok {
			return nil, nil
		}
		for _, k := range o.keys {
			elems = append(elems, o.vals[k])
		}
	case "flatten":
		list, ok := l.([]any)
		if !ok {
			return nil, nil
		}
		for _, e := range list {
			if inner, ok := e.([]any); ok {
				elems = append(elems, inner...)
			} else {
				elems = append(elems, e)
			}
		}
	default:
		list, ok := l.([]any)
		if !ok {
			return nil, nil
		}
		elems = list
	}
	out := []any{}
	for _, e := range elems {
		if p.kind == "filter" {
			c, err := p.cond.eval(e)
			if err != nil {
				return nil, err
			}
			if !truthy(c) {
				continue
			}
		}
		r, err := p.right.eval(e)
		if err != nil {
			return nil, err
		}
		if r != nil {
			out = append(out, r)
		}
	}
	return out, nil
}

type literal struct{ v any }

func (l literal) eval(any) (any, error) { return l.v, nil }

type multiList []node

func (m multiList) eval(v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	out := make([]any, 0, len(m))
	for _, n := range m {
		r, err := n.eval(v)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

type multiHash struct {
	keys []string
	vals []node
}

func (m multiHash) eval(v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	o := newObject()
	for i, k := range m.keys {
		r, err := m.vals[i].eval(v)
		if err != nil {
			return nil, err
		}
		o.set(k, r)
	}
	return o, nil
}

type not struct{ n node }

func (n not) eval(v any) (any, error) {
	r, err := n.n.eval(v)
	return !truthy(r), err
}

type binary struct {
	op          string
	left, right node
}

func (b binary) eval(v any) (any, error) {
	l, err := b.left.eval(v)
	if err != nil {
		return nil, err
	}
	switch b.op {
	case "|":
		return b.right.eval(l)
	case "||":
		if truthy(l) {
			return l, nil
		}
		return b.right.eval(v)
	case "&&":
		if !truthy(l) {
			return l, nil
		}
		return b.right.eval(v)
	}
	r, err := b.right.eval(v)
	if err != nil {
		return nil, err
	}
	switch b.op {
	case "==":
		return equal(l, r), nil
	case "!=":
		return !equal(l, r), nil
	}
	ln, lok := number(l)
	rn, rok := number(r)
	if !lok || !rok {
		return nil, nil
	}
	switch b.op {
	case "<":
		return ln < rn, nil
	case "<=":
		return ln <= rn, nil
	case ">":
		return ln > rn, nil
	default: // ">="
		return ln >= rn, nil
	}
}

type call struct {
	name string
	args []node
}

// functions are the JMESPath functions --query knows, with their arity.
var functions = map[string]int{"length": 1, "keys": 1, "values": 1, "contains": 2, "starts_with": 2}

func (c call) eval(v any) (any, error) {
	if len(c.args) != functions[c.name] {
		return nil, fmt.Errorf("%s() takes %d arguments, got %d", c.name, functions[c.name], len(c.args))
	}
	args := make([]any, len(c.args))
	for i, a := range c.args {
		r, err := a.eval(v)
		if err != nil {
			return nil, err
		}
		args[i] = r
	}
	switch c.name {
	case "length":
		switch t := args[0].(type) {
		case string:
			return json.Number(strconv.Itoa(utf8.RuneCountInString(t))), nil
		case []any:
			return json.Number(strconv.Itoa(len(t))), nil
		case *object:
			return json.Number(strconv.Itoa(len(t.keys))), nil
		}
		return nil, fmt.Errorf("length() needs a string, array or object")
	case "keys", "values":
		o, ok := args[0].(*object)
		if !ok {
			return nil, fmt.Errorf("%s() needs an object", c.name)
		}
		out := []any{}
		for _, k := range o.keys {
			if c.name == "keys" {
				out = append(out, k)
			} else {
				out = append(out, o.vals[k])
			}
		}
		return out, nil
	case "contains":
		switch t := args[0].(type) {
		case string:
			s, ok := args[1].(string)
			return ok && strings.Contains(t, s), nil
		case []any:
			for _, e := range t {
				if equal(e, args[1]) {
					return true, nil
				}
			}
			return false, nil
		}
		return nil, fmt.Errorf("contains() needs a string or array")
	default: // starts_with
		s, ok1 := args[0].(string)
		prefix, ok2 := args[1].(string)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("starts_with() needs two strings")
		}
		return strings.HasPrefix(s, prefix), nil
	}
}

// truthy is JMESPath's truth: false, null, "", [] and {} are false.
func truthy(v any) bool {
	switch t := v.(type) {
	case nil:
		return false
	case bool:
		return t
	case string:
		return t != ""
	case []any:
		return len(t) > 0
	case *object:
		return len(t.keys) > 0
	}
	return true
}

func number(v any) (float64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64()
	return f, err == nil
}

func equal(a, b any) bool {
	if an, ok := number(a); ok {
		bn, ok := number(b)
		return ok && an == bn
	}
	switch at := a.(type) {
	case []any:
		bt, ok := b.([]any)
		if !ok || len(at) != len(bt) {
			return false
		}
		for i := range at {
			if !equal(at[i], bt[i]) {
				return false
			}
		}
		return true
	case *object:
		bt, ok := b.(*object)
		if !ok || len(at.keys) != len(bt.keys) {
			return false
		}
		for _, k := range at.keys {
			bv, ok := bt.get(k)
			if !ok || !equal(at.vals[k], bv) {
				return false
			}
		}
		return true
	}
	return a == b
}
