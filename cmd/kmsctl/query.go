package main

import (
	"encoding/json"
	"math"
	"sort"
	"strconv"

	jmespath "github.com/jmespath-community/go-jmespath"
	"github.com/jmespath-community/go-jmespath/pkg/parsing"
)

// compiledQuery is a --query expression, evaluated by the JMESPath
// library (github.com/jmespath-community/go-jmespath, which implements the
// whole JMESPath specification with its functions), plus what kmsctl needs
// to print the result in the AWS CLI's order.
type compiledQuery struct {
	expr   jmespath.JMESPath
	fields map[string]bool // every field name the expression mentions
	order  map[string]int  // multi-select hash keys, in the order written
}

func compileQuery(s string) (*compiledQuery, error) {
	ast, err := parsing.NewParser().Parse(s)
	if err != nil {
		return nil, err
	}
	expr, err := jmespath.Compile(s)
	if err != nil {
		return nil, err
	}
	q := &compiledQuery{expr: expr, fields: map[string]bool{}, order: map[string]int{}}
	q.walk(ast)
	return q, nil
}

func (q *compiledQuery) walk(n parsing.ASTNode) {
	switch n.NodeType {
	case parsing.ASTField:
		if s, ok := n.Value.(string); ok {
			q.fields[s] = true
		}
	case parsing.ASTKeyValPair:
		if s, ok := n.Value.(string); ok {
			if _, seen := q.order[s]; !seen {
				q.order[s] = len(q.order)
			}
		}
	}
	for _, c := range n.Children {
		q.walk(c)
	}
}

// eval applies the query to an answer (as toValue makes it) and gives the
// result in the same form: objects keep the answer's field order, and a
// multi-select hash keeps the order its keys were written in.
func (q *compiledQuery) eval(doc any) (any, error) {
	rank := map[string]int{}
	collectKeys(doc, rank)
	res, err := q.expr.Search(toPlain(doc))
	if err != nil {
		return nil, err
	}
	return fromPlain(res, func(keys []string) {
		sort.SliceStable(keys, func(i, j int) bool {
			oi, iok := q.order[keys[i]]
			oj, jok := q.order[keys[j]]
			if iok || jok {
				return iok && (!jok || oi < oj)
			}
			ri, iok := rank[keys[i]]
			rj, jok := rank[keys[j]]
			if iok && jok {
				return ri < rj
			}
			if iok != jok {
				return iok
			}
			return keys[i] < keys[j]
		})
	}), nil
}

// collectKeys ranks every field name by where it first appears.
func collectKeys(v any, rank map[string]int) {
	switch t := v.(type) {
	case *object:
		for _, k := range t.keys {
			if _, ok := rank[k]; !ok {
				rank[k] = len(rank)
			}
			collectKeys(t.vals[k], rank)
		}
	case []any:
		for _, e := range t {
			collectKeys(e, rank)
		}
	}
}

// toPlain is a value as the JMESPath library takes it: maps, slices,
// float64 numbers.
func toPlain(v any) any {
	switch t := v.(type) {
	case *object:
		m := make(map[string]any, len(t.keys))
		for _, k := range t.keys {
			m[k] = toPlain(t.vals[k])
		}
		return m
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = toPlain(e)
		}
		return out
	case json.Number:
		f, _ := t.Float64()
		return f
	}
	return v
}

// fromPlain is the way back; order sorts an object's keys.
func fromPlain(v any, order func([]string)) any {
	switch t := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		order(keys)
		o := newObject()
		for _, k := range keys {
			o.set(k, fromPlain(t[k], order))
		}
		return o
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = fromPlain(e, order)
		}
		return out
	case float64:
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return nil // JSON has no such numbers
		}
		if t == math.Trunc(t) && math.Abs(t) < 1<<53 {
			return json.Number(strconv.FormatInt(int64(t), 10))
		}
		return json.Number(strconv.FormatFloat(t, 'g', -1, 64))
	case int:
		return json.Number(strconv.Itoa(t))
	}
	return v
}
