package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// --query takes a subset of JMESPath, the language of the AWS CLI's --query:
// fields (a.b, "quoted"), indexes (a[0], a[-1]), projections (a[*].b,
// a[].b, a[?b=='x'].c, a.*), pipes (a[*].b | [0]), multiselect lists
// ([a, b]) and hashes ({A: a}), comparisons (== != < <= > >=), && || !,
// literals ('raw', `json`), @, and the functions length, keys, values,
// contains, starts_with.

// node is a parsed query expression.
type node interface {
	eval(v any) (any, error)
}

// parseQuery parses a query expression.
func parseQuery(s string) (node, error) {
	toks, err := lexQuery(s)
	if err != nil {
		return nil, err
	}
	p := &qparser{toks: toks}
	n, err := p.expr(0)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, fmt.Errorf("unexpected %q", t.text)
	}
	return n, nil
}

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tRaw     // 'raw string'
	tLiteral // `json`
	tNumber
	tPunct
)

type qtok struct {
	kind tokKind
	text string
}

func lexQuery(s string) ([]qtok, error) {
	var toks []qtok
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
			j := i
			for j < len(s) && (s[j] == '_' || 'a' <= s[j] && s[j] <= 'z' || 'A' <= s[j] && s[j] <= 'Z' || '0' <= s[j] && s[j] <= '9') {
				j++
			}
			toks = append(toks, qtok{tIdent, s[i:j]})
			i = j
		case c == '-' || '0' <= c && c <= '9':
			j := i + 1
			for j < len(s) && '0' <= s[j] && s[j] <= '9' {
				j++
			}
			if s[i:j] == "-" {
				return nil, fmt.Errorf("bad number at offset %d", i)
			}
			toks = append(toks, qtok{tNumber, s[i:j]})
			i = j
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(s) && s[j] != c {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated %c at offset %d", c, i)
			}
			body := s[i+1 : j]
			switch c {
			case '"':
				var id string
				if err := json.Unmarshal([]byte(s[i:j+1]), &id); err != nil {
					return nil, fmt.Errorf("bad quoted identifier %s", s[i:j+1])
				}
				toks = append(toks, qtok{tIdent, id})
			case '\'':
				toks = append(toks, qtok{tRaw, strings.ReplaceAll(body, `\'`, `'`)})
			default:
				toks = append(toks, qtok{tLiteral, strings.ReplaceAll(body, "\\`", "`")})
			}
			i = j + 1
		default:
			op := ""
			for _, cand := range []string{"||", "&&", "==", "!=", "<=", ">=", "[?", "[]"} {
				if strings.HasPrefix(s[i:], cand) {
					op = cand
					break
				}
			}
			if op == "" {
				if !strings.ContainsRune(".[]{}(),:|!<>@*", rune(c)) {
					r, _ := utf8.DecodeRuneInString(s[i:])
					return nil, fmt.Errorf("unexpected character %q at offset %d", r, i)
				}
				op = string(c)
			}
			toks = append(toks, qtok{tPunct, op})
			i += len(op)
		}
	}
	return toks, nil
}

type qparser struct {
	toks []qtok
	pos  int
}

func (p *qparser) peek() qtok {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return qtok{kind: tEOF}
}

func (p *qparser) isPunct(s string) bool {
	t := p.peek()
	return t.kind == tPunct && t.text == s
}

func (p *qparser) expect(s string) error {
	if !p.isPunct(s) {
		if t := p.peek(); t.kind != tEOF {
			return fmt.Errorf("expected %q, found %q", s, t.text)
		}
		return fmt.Errorf("expected %q at the end", s)
	}
	p.pos++
	return nil
}

// Binding powers, lowest first, as in JMESPath.
var binaryPower = map[string]int{"|": 1, "||": 2, "&&": 3, "==": 5, "!=": 5, "<": 5, "<=": 5, ">": 5, ">=": 5}

// expr parses an expression whose binary operators bind tighter than min.
func (p *qparser) expr(min int) (node, error) {
	left, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		power, ok := binaryPower[t.text]
		if t.kind != tPunct || !ok || power <= min {
			return left, nil
		}
		p.pos++
		right, err := p.expr(power)
		if err != nil {
			return nil, err
		}
		left = binary{t.text, left, right}
	}
}

func (p *qparser) unary() (node, error) {
	if p.isPunct("!") {
		p.pos++
		n, err := p.unary()
		return not{n}, err
	}
	n, err := p.primary()
	if err != nil {
		return nil, err
	}
	return p.postfix(n, false)
}

func (p *qparser) primary() (node, error) {
	t := p.peek()
	switch {
	case t.kind == tIdent:
		p.pos++
		if p.isPunct("(") {
			return p.call(t.text)
		}
		return field(t.text), nil
	case t.kind == tRaw:
		p.pos++
		return literal{t.text}, nil
	case t.kind == tLiteral:
		p.pos++
		v, err := toValueJSON(t.text)
		if err != nil {
			return nil, fmt.Errorf("bad literal `%s`: %v", t.text, err)
		}
		return literal{v}, nil
	case t.kind == tPunct && t.text == "@":
		p.pos++
		return identity{}, nil
	case t.kind == tPunct && t.text == "(":
		p.pos++
		n, err := p.expr(0)
		if err != nil {
			return nil, err
		}
		return n, p.expect(")")
	case t.kind == tPunct && t.text == "{":
		return p.hash()
	case t.kind == tPunct && t.text == "[":
		if next := p.peekAt(1); next.kind == tNumber || next.kind == tPunct && next.text == "*" {
			return identity{}, nil // [0] or [*] applied to the current value
		}
		return p.multiList()
	case t.kind == tPunct && (t.text == "[]" || t.text == "[?" || t.text == "*"):
		return identity{}, nil // a projection of the current value
	case t.kind == tEOF:
		return nil, fmt.Errorf("unexpected end of expression")
	}
	return nil, fmt.Errorf("unexpected %q", t.text)
}

func (p *qparser) peekAt(k int) qtok {
	if p.pos+k < len(p.toks) {
		return p.toks[p.pos+k]
	}
	return qtok{kind: tEOF}
}

// postfix parses what follows a value: .field, [N], and projections. A
// projection takes the rest of the chain as its right-hand side; inside
// one, a flatten ([]) ends the chain so that it applies to the whole
// projection, as JMESPath says.
func (p *qparser) postfix(n node, inProjection bool) (node, error) {
	for {
		t := p.peek()
		if t.kind != tPunct {
			return n, nil
		}
		switch t.text {
		case ".":
			p.pos++
			next := p.peek()
			switch {
			case next.kind == tIdent:
				p.pos++
				n = sub{n, field(next.text)}
			case next.kind == tPunct && next.text == "[":
				m, err := p.multiList()
				if err != nil {
					return nil, err
				}
				n = sub{n, m}
			case next.kind == tPunct && next.text == "{":
				m, err := p.hash()
				if err != nil {
					return nil, err
				}
				n = sub{n, m}
			case next.kind == tPunct && next.text == "*":
				p.pos++
				rhs, err := p.postfix(identity{}, true)
				if err != nil {
					return nil, err
				}
				n = projection{kind: "values", left: n, right: rhs}
				if inProjection {
					return n, nil
				}
			default:
				return nil, fmt.Errorf("expected a field after '.', found %q", next.text)
			}
		case "[":
			p.pos++
			next := p.peek()
			switch {
			case next.kind == tNumber:
				p.pos++
				i, err := strconv.Atoi(next.text)
				if err != nil {
					return nil, fmt.Errorf("bad index %s", next.text)
				}
				if err := p.expect("]"); err != nil {
					return nil, err
				}
				n = index{n, i}
			case next.kind == tPunct && next.text == "*":
				p.pos++
				if err := p.expect("]"); err != nil {
					return nil, err
				}
				rhs, err := p.postfix(identity{}, true)
				if err != nil {
					return nil, err
				}
				n = projection{kind: "list", left: n, right: rhs}
				if inProjection {
					return n, nil
				}
			default:
				return nil, fmt.Errorf("expected an index or '*' after '[', found %q", next.text)
			}
		case "*":
			// A leading "*" (object values of the current value).
			p.pos++
			rhs, err := p.postfix(identity{}, true)
			if err != nil {
				return nil, err
			}
			n = projection{kind: "values", left: n, right: rhs}
			if inProjection {
				return n, nil
			}
		case "[]":
			if inProjection {
				return n, nil
			}
			p.pos++
			rhs, err := p.postfix(identity{}, true)
			if err != nil {
				return nil, err
			}
			n = projection{kind: "flatten", left: n, right: rhs}
		case "[?":
			p.pos++
			cond, err := p.expr(0)
			if err != nil {
				return nil, err
			}
			if err := p.expect("]"); err != nil {
				return nil, err
			}
			rhs, err := p.postfix(identity{}, true)
			if err != nil {
				return nil, err
			}
			n = projection{kind: "filter", left: n, right: rhs, cond: cond}
			if inProjection {
				return n, nil
			}
		default:
			return n, nil
		}
	}
}

func (p *qparser) multiList() (node, error) {
	if err := p.expect("["); err != nil {
		return nil, err
	}
	var items []node
	for {
		n, err := p.expr(0)
		if err != nil {
			return nil, err
		}
		items = append(items, n)
		if p.isPunct("]") {
			p.pos++
			return multiList(items), nil
		}
		if err := p.expect(","); err != nil {
			return nil, err
		}
	}
}

func (p *qparser) hash() (node, error) {
	if err := p.expect("{"); err != nil {
		return nil, err
	}
	h := multiHash{}
	for {
		k := p.peek()
		if k.kind != tIdent {
			return nil, fmt.Errorf("expected a key in {...}, found %q", k.text)
		}
		p.pos++
		if err := p.expect(":"); err != nil {
			return nil, err
		}
		n, err := p.expr(0)
		if err != nil {
			return nil, err
		}
		h.keys = append(h.keys, k.text)
		h.vals = append(h.vals, n)
		if p.isPunct("}") {
			p.pos++
			return h, nil
		}
		if err := p.expect(","); err != nil {
			return nil, err
		}
	}
}

func (p *qparser) call(name string) (node, error) {
	if _, ok := functions[name]; !ok {
		return nil, fmt.Errorf("unknown function %s()", name)
	}
	p.pos++ // (
	c := call{name: name}
	if p.isPunct(")") {
		p.pos++
		return c, nil
	}
	for {
		n, err := p.expr(0)
		if err != nil {
			return nil, err
		}
		c.args = append(c.args, n)
		if p.isPunct(")") {
			p.pos++
			return c, nil
		}
		if err := p.expect(","); err != nil {
			return nil, err
		}
	}
}

// toValueJSON decodes a `literal` into generic values.
func toValueJSON(s string) (any, error) {
	var probe any
	if err := json.Unmarshal([]byte(s), &probe); err != nil {
		return nil, err
	}
	return toValue(json.RawMessage(s))
}
