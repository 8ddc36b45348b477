package rpc

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/raftkms/raftkms/pki"
	"google.golang.org/grpc/codes"
)

// Key policies are a subset of AWS key policy JSON:
//
//	{"Version": "2012-10-17",
//	 "Statement": [{"Sid": "...", "Effect": "Allow" | "Deny",
//	                "Principal": "*" | {"Identity": "app" | ["app", ...]} |
//	                             {"AWS": "app" | "arn:aws:iam::ACCOUNT:user/app" | ["*", ...]},
//	                "Action": "kms:Encrypt" | ["kms:Encrypt", "kms:Generate*", ...] | "kms:*",
//	                "Condition": {...}}]}
//
// A statement applies when its principal, action and every condition
// (conditions.go) match the request. An explicit Deny wins over any Allow
// and over any grant; what no statement allows and no grant gives is denied.
// Identities are the names certificates carry (URI SAN, else common name).

// policyStatement is one parsed statement.
type policyStatement struct {
	allow      bool
	anyone     bool
	identities map[string]bool
	actions    []string // exact names or prefixes ending in '*'
	conds      []condition
}

// keyPolicy is a parsed key policy.
type keyPolicy struct {
	statements []policyStatement
}

type rawStatement struct {
	Sid       string          `json:"Sid,omitempty"`
	Effect    string          `json:"Effect"`
	Principal json.RawMessage `json:"Principal"`
	Action    json.RawMessage `json:"Action"`
	Resource  json.RawMessage `json:"Resource,omitempty"`
	Condition json.RawMessage `json:"Condition,omitempty"`
}

type rawPolicy struct {
	Version   string         `json:"Version"`
	Id        string         `json:"Id,omitempty"`
	Statement []rawStatement `json:"Statement"`
}

// stringOrList decodes "x" or ["x", "y"].
func stringOrList(raw json.RawMessage) ([]string, error) {
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, fmt.Errorf("want a string or a list of strings")
	}
	return many, nil
}

func malformedPolicy(format string, args ...any) error {
	return &apiError{code: codes.InvalidArgument, name: "MalformedPolicyDocumentException", msg: fmt.Sprintf(format, args...)}
}

// parsePolicy checks and parses a key policy document.
func parsePolicy(doc string) (*keyPolicy, error) {
	var raw rawPolicy
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, malformedPolicy("the policy is not valid JSON of the supported form: %v", err)
	}
	if raw.Version != "" && raw.Version != "2012-10-17" {
		return nil, malformedPolicy("Version must be 2012-10-17")
	}
	if len(raw.Statement) == 0 {
		return nil, malformedPolicy("the policy has no Statement")
	}
	p := &keyPolicy{}
	for i, rs := range raw.Statement {
		var st policyStatement
		switch rs.Effect {
		case "Allow":
			st.allow = true
		case "Deny":
		default:
			return nil, malformedPolicy("statement %d: Effect must be Allow or Deny", i)
		}
		if len(rs.Condition) > 0 && string(rs.Condition) != "null" {
			conds, err := parseConditions(rs.Condition)
			if err != nil {
				return nil, malformedPolicy("statement %d: %s", i, err.(*apiError).msg)
			}
			st.conds = conds
		}
		var star string
		if err := json.Unmarshal(rs.Principal, &star); err == nil {
			if star != "*" {
				return nil, malformedPolicy("statement %d: Principal must be \"*\" or {\"Identity\": [...]}", i)
			}
			st.anyone = true
		} else {
			var pr struct {
				Identity json.RawMessage `json:"Identity"`
				AWS      json.RawMessage `json:"AWS"`
			}
			if err := json.Unmarshal(rs.Principal, &pr); err != nil || (len(pr.Identity) == 0 && len(pr.AWS) == 0) {
				return nil, malformedPolicy("statement %d: Principal must be \"*\" or {\"Identity\": [...]}", i)
			}
			var ids []string
			if len(pr.Identity) > 0 {
				if ids, err = stringOrList(pr.Identity); err != nil || len(ids) == 0 {
					return nil, malformedPolicy("statement %d: Principal.Identity: %v", i, err)
				}
			}
			if len(pr.AWS) > 0 {
				more, err := awsPrincipals(pr.AWS)
				if err != nil {
					return nil, malformedPolicy("statement %d: Principal.AWS: %v", i, err)
				}
				ids = append(ids, more...)
			}
			st.identities = map[string]bool{}
			for _, id := range ids {
				if id == "*" {
					st.anyone = true
				}
				st.identities[id] = true
			}
		}
		actions, err := stringOrList(rs.Action)
		if err != nil || len(actions) == 0 {
			return nil, malformedPolicy("statement %d: Action is required", i)
		}
		for _, a := range actions {
			if !strings.HasPrefix(a, "kms:") || strings.Contains(strings.TrimSuffix(a, "*"), "*") {
				return nil, malformedPolicy("statement %d: action %q must be kms:NAME, kms:PREFIX* or kms:*", i, a)
			}
		}
		st.actions = actions
		p.statements = append(p.statements, st)
	}
	return p, nil
}

// appliesTo reports whether the statement names identity and action,
// leaving its conditions aside.
func (st *policyStatement) appliesTo(identity, action string) bool {
	if !st.anyone && !st.identities[identity] {
		return false
	}
	for _, a := range st.actions {
		if a == action || (strings.HasSuffix(a, "*") && strings.HasPrefix(action, strings.TrimSuffix(a, "*"))) {
			return true
		}
	}
	return false
}

func (st *policyStatement) matches(identity, action string, f *condFacts) bool {
	if !st.appliesTo(identity, action) {
		return false
	}
	for i := range st.conds {
		if !st.conds[i].holds(f) {
			return false
		}
	}
	return true
}

// policyDecision is what a key policy says about a request.
type policyDecision uint8

const (
	policyNone  policyDecision = iota // no statement applies: a grant may still allow it
	policyAllow                       // an Allow applies and no Deny
	policyDeny                        // an explicit Deny applies: nothing else can allow it
)

// decide evaluates the policy for a request: an explicit Deny wins, then
// any Allow.
func (p *keyPolicy) decide(identity, action string, f *condFacts) policyDecision {
	if f == nil {
		f = &condFacts{}
	}
	d := policyNone
	for i := range p.statements {
		st := &p.statements[i]
		if !st.matches(identity, action, f) {
			continue
		}
		if !st.allow {
			return policyDeny
		}
		d = policyAllow
	}
	return d
}

// allows reports whether the policy allows a request with no condition
// facts (no encryption context, no alias, no grant operations).
func (p *keyPolicy) allows(identity, action string) bool {
	return p.decide(identity, action, nil) == policyAllow
}

// defaultPolicy gives the key's creator every action on it.
func defaultPolicy(creator string) string {
	b, _ := json.Marshal(rawPolicy{Version: "2012-10-17", Statement: []rawStatement{{
		Sid:       "Enable the key's creator",
		Effect:    "Allow",
		Principal: mustJSON(map[string][]string{"Identity": {creator}}),
		Action:    mustJSON("kms:*"),
	}}})
	return string(b)
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// policyCache keeps parsed policies by document, so a crypto call does not
// parse JSON.
type policyCache struct {
	mu sync.RWMutex
	m  map[string]*keyPolicy
}

func (c *policyCache) get(doc string) (*keyPolicy, error) {
	c.mu.RLock()
	p, ok := c.m[doc]
	c.mu.RUnlock()
	if ok {
		return p, nil
	}
	p, err := parsePolicy(doc)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) > 10000 {
		c.m = map[string]*keyPolicy{}
	}
	c.m[doc] = p
	c.mu.Unlock()
	return p, nil
}

// checkLockout is AWS's policy lockout safety check: CreateKey and
// PutKeyPolicy refuse a policy under which the caller could not change the
// policy again, unless BypassPolicyLockoutSafetyCheck is set. Admins may
// always replace a key's policy (recovery), so the check passes for them.
func (s *Server) checkLockout(ctx context.Context, p *keyPolicy, bypass bool) error {
	if bypass || !s.cfg.Auth.Enabled {
		return nil
	}
	c := callerOf(ctx)
	if c.role == pki.RoleAdmin {
		return nil
	}
	if p.decide(c.identity, "kms:PutKeyPolicy", &condFacts{callerAccount: s.cfg.ARN.Account}) == policyAllow {
		return nil
	}
	return malformedPolicy("the new key policy would not allow %s to update the key policy in the future; "+
		"set BypassPolicyLockoutSafetyCheck to apply it anyway", c.identity)
}
