package rpc

import (
	"encoding/json"
	"sort"
	"strings"
)

// Key policy conditions, a subset of IAM's condition language for the
// condition keys that matter to a KMS:
//
//	"Condition": {"StringEquals": {"kms:EncryptionContext:dept": "a"},
//	              "ForAllValues:StringLike": {"kms:EncryptionContextKeys": ["dept", "app*"]},
//	              "Null": {"kms:RequestAlias": "false"}}
//
// Operators: StringEquals, StringNotEquals, StringEqualsIgnoreCase,
// StringNotEqualsIgnoreCase, StringLike, StringNotLike (each optionally
// with a ForAnyValue: or ForAllValues: prefix), Bool and Null. Keys:
// kms:EncryptionContext:KEY, kms:EncryptionContextKeys, kms:GrantOperations,
// kms:GrantIsForAWSResource (always false here: raftkms has no AWS
// services), kms:RequestAlias and kms:CallerAccount. Every operator in a
// statement must hold, every key under an operator must hold, and a key
// holds when its request value matches any of the listed values. Anything
// else is a MalformedPolicyDocumentException, never silently ignored.

// condFacts are the request values conditions are evaluated against.
type condFacts struct {
	encryptionContext map[string]string // nil when the request has none
	grantOperations   []string          // CreateGrant's operations
	requestAlias      string            // alias/NAME when the key was named by an alias
	callerAccount     string
}

// condKey names one condition key.
type condKey struct {
	name  string // canonical (lower-case) name, or the kms:EncryptionContext: prefix
	ecKey string // for kms:EncryptionContext:KEY
}

const ecPrefix = "kms:encryptioncontext:"

// values returns the request's values for the key, and whether the key is
// present in the request at all.
func (k condKey) values(f *condFacts) ([]string, bool) {
	switch k.name {
	case ecPrefix:
		v, ok := f.encryptionContext[k.ecKey]
		if !ok {
			return nil, false
		}
		return []string{v}, true
	case "kms:encryptioncontextkeys":
		if len(f.encryptionContext) == 0 {
			return nil, false
		}
		keys := make([]string, 0, len(f.encryptionContext))
		for k := range f.encryptionContext {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return keys, true
	case "kms:grantoperations":
		return f.grantOperations, len(f.grantOperations) > 0
	case "kms:grantisforawsresource":
		return []string{"false"}, true
	case "kms:requestalias":
		return []string{f.requestAlias}, f.requestAlias != ""
	case "kms:calleraccount":
		return []string{f.callerAccount}, f.callerAccount != ""
	}
	return nil, false
}

var knownCondKeys = map[string]bool{
	"kms:encryptioncontextkeys": true, "kms:grantoperations": true, "kms:grantisforawsresource": true,
	"kms:requestalias": true, "kms:calleraccount": true,
}

func parseCondKey(s string) (condKey, bool) {
	l := strings.ToLower(s)
	if strings.HasPrefix(l, ecPrefix) && len(s) > len(ecPrefix) {
		// The context key itself is case-sensitive, as contexts are.
		return condKey{name: ecPrefix, ecKey: s[len(ecPrefix):]}, true
	}
	if knownCondKeys[l] {
		return condKey{name: l}, true
	}
	return condKey{}, false
}

type setOp uint8

const (
	setNone setOp = iota
	setAnyValue
	setAllValues
)

// condOp is one comparison operator.
type condOp uint8

const (
	opStringEquals condOp = iota + 1
	opStringNotEquals
	opStringEqualsIgnoreCase
	opStringNotEqualsIgnoreCase
	opStringLike
	opStringNotLike
	opBool
	opNull
)

var condOps = map[string]condOp{
	"StringEquals": opStringEquals, "StringNotEquals": opStringNotEquals,
	"StringEqualsIgnoreCase": opStringEqualsIgnoreCase, "StringNotEqualsIgnoreCase": opStringNotEqualsIgnoreCase,
	"StringLike": opStringLike, "StringNotLike": opStringNotLike, "Bool": opBool, "Null": opNull,
}

func (o condOp) negated() bool {
	return o == opStringNotEquals || o == opStringNotEqualsIgnoreCase || o == opStringNotLike
}

// matchOne compares one request value to one policy value (the positive
// form of the operator).
func (o condOp) matchOne(req, pol string) bool {
	switch o {
	case opStringEquals, opStringNotEquals:
		return req == pol
	case opStringEqualsIgnoreCase, opStringNotEqualsIgnoreCase:
		return strings.EqualFold(req, pol)
	case opStringLike, opStringNotLike:
		return globMatch(pol, req)
	case opBool:
		return strings.EqualFold(req, pol)
	}
	return false
}

// condition is one (operator, key, values) test.
type condition struct {
	set    setOp
	op     condOp
	key    condKey
	values []string
}

// holds evaluates the condition for the request.
func (c *condition) holds(f *condFacts) bool {
	got, present := c.key.values(f)
	if c.op == opNull {
		// "true": the key is absent; "false": it is present.
		return c.values[0] == "true" && !present || c.values[0] == "false" && present
	}
	matchAny := func(v string) bool {
		for _, p := range c.values {
			if c.op.matchOne(v, p) {
				return true
			}
		}
		return false
	}
	switch c.set {
	case setAllValues:
		// Every request value must match (positive form) or match none
		// (negated form); vacuously true with no values, as in IAM.
		for _, v := range got {
			if matchAny(v) == c.op.negated() {
				return false
			}
		}
		return true
	default:
		// Single-valued keys and ForAnyValue: some request value matches
		// (positive form) or fails to match (negated form). An absent key
		// fails a positive test and passes a negated one.
		if !present {
			return c.op.negated() && c.set == setNone
		}
		for _, v := range got {
			if matchAny(v) != c.op.negated() {
				return true
			}
		}
		return false
	}
}

// parseConditions checks and parses a statement's Condition block.
func parseConditions(raw json.RawMessage) ([]condition, error) {
	var block map[string]map[string]json.RawMessage
	if err := json.Unmarshal(raw, &block); err != nil {
		return nil, malformedPolicy("Condition must map operators to {key: value or [values]}")
	}
	ops := make([]string, 0, len(block))
	for op := range block {
		ops = append(ops, op)
	}
	sort.Strings(ops) // a deterministic order (errors name the first bad one)
	var out []condition
	for _, opName := range ops {
		set, base := setNone, opName
		switch {
		case strings.HasPrefix(opName, "ForAnyValue:"):
			set, base = setAnyValue, strings.TrimPrefix(opName, "ForAnyValue:")
		case strings.HasPrefix(opName, "ForAllValues:"):
			set, base = setAllValues, strings.TrimPrefix(opName, "ForAllValues:")
		}
		op, ok := condOps[base]
		if !ok || (set != setNone && (op == opNull || op == opBool)) {
			return nil, malformedPolicy("condition operator %q is not supported", opName)
		}
		keys := block[opName]
		if len(keys) == 0 {
			return nil, malformedPolicy("condition operator %q has no keys", opName)
		}
		names := make([]string, 0, len(keys))
		for k := range keys {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, name := range names {
			key, ok := parseCondKey(name)
			if !ok {
				return nil, malformedPolicy("condition key %q is not supported", name)
			}
			vals, err := stringOrList(keys[name])
			if err != nil || len(vals) == 0 {
				return nil, malformedPolicy("condition %s %s: want a string or a non-empty list of strings", opName, name)
			}
			if op == opNull || op == opBool {
				if len(vals) != 1 || (vals[0] != "true" && vals[0] != "false") {
					return nil, malformedPolicy("condition %s %s: the value must be \"true\" or \"false\"", opName, name)
				}
			}
			out = append(out, condition{set: set, op: op, key: key, values: vals})
		}
	}
	return out, nil
}

// globMatch matches s against pattern, where * matches any run of
// characters (also none) and ? any one character, as IAM's StringLike.
func globMatch(pattern, s string) bool {
	p, str := []rune(pattern), []rune(s)
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(str) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == str[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
