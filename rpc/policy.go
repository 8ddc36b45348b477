package rpc

import (
	"encoding/json"
	"fmt"
	"google.golang.org/grpc/codes"
	"strings"
	"sync"
)

// Key policies are a subset of AWS key policy JSON:
//
//	{"Version": "2012-10-17",
//	 "Statement": [{"Sid": "...", "Effect": "Allow" | "Deny",
//	                "Principal": "*" | {"Identity": "app" | ["app", ...]} |
//	                             {"AWS": "app" | "arn:aws:iam::ACCOUNT:user/app" | ["*", ...]},
//	                "Action": "kms:Encrypt" | ["kms:Encrypt", "kms:Generate*", ...] | "kms:*"}]}
//
// An explicit Deny wins over any Allow; what no statement allows is denied.
// Identities are the names certificates carry (URI SAN, else common name).

// policyStatement is one parsed statement.
type policyStatement struct {
	allow      bool
	anyone     bool
	identities map[string]bool
	actions    []string // exact names or prefixes ending in '*'
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
			return nil, malformedPolicy("statement %d: Condition is not supported", i)
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

func (st *policyStatement) matches(identity, action string) bool {
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

// allows evaluates the policy: an explicit Deny wins, then any Allow.
func (p *keyPolicy) allows(identity, action string) bool {
	allowed := false
	for i := range p.statements {
		st := &p.statements[i]
		if !st.matches(identity, action) {
			continue
		}
		if !st.allow {
			return false
		}
		allowed = true
	}
	return allowed
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
