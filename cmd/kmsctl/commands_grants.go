package main

import (
	"encoding/json"
	"strings"

	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
)

// Grants, the rest of the key-policy commands, generate-random, and
// raftkms's version controls.

func init() {
	register("create-grant", "Gives a principal operations on a key (in force on every node once this returns).",
		"key-id! grantee-principal! retiring-principal operations! constraints grant-tokens name dry-run", createGrant)
	register("list-grants", "Lists a key's grants.", "key-id! grant-id grantee-principal"+pageFlags, listGrants)
	register("list-retirable-grants", "Lists the grants a principal may retire, on every key.",
		"retiring-principal!"+pageFlags, listRetirableGrants)
	register("retire-grant", "Retires a grant, by --grant-token or by --key-id and --grant-id.",
		"grant-token key-id grant-id dry-run", func(e *env, p *params) (any, error) {
			_, err := e.kms().RetireGrant(e.ctx, &kmsv1.RetireGrantRequest{GrantToken: p.str("grant-token"),
				KeyId: p.str("key-id"), GrantId: p.str("grant-id"), DryRun: p.flag("dry-run")})
			return nil, err
		})
	register("revoke-grant", "Revokes a grant.", "key-id! grant-id! dry-run", func(e *env, p *params) (any, error) {
		_, err := e.kms().RevokeGrant(e.ctx, &kmsv1.RevokeGrantRequest{KeyId: p.str("key-id"), GrantId: p.str("grant-id"), DryRun: p.flag("dry-run")})
		return nil, err
	})
	register("list-key-policies", "Lists a key's policy names (always default).", "key-id!"+pageFlags, listKeyPolicies)
	register("generate-random", "Prints 1 to 1024 random bytes from the answering node.", "number-of-bytes!",
		func(e *env, p *params) (any, error) {
			n, err := p.int32("number-of-bytes")
			if err != nil {
				return nil, err
			}
			r, err := e.kms().GenerateRandom(e.ctx, &kmsv1.GenerateRandomRequest{NumberOfBytes: n})
			if err != nil {
				return nil, err
			}
			return generateRandomDoc{Plaintext: r.GetPlaintext()}, nil
		})
	register("update-key-version-policy", "Sets the oldest key version that may decrypt (raftkms extension).",
		"key-id! min-decryption-version!", func(e *env, p *params) (any, error) {
			n, err := p.int32("min-decryption-version")
			if err != nil {
				return nil, err
			}
			r, err := e.kms().UpdateKeyVersionPolicy(e.ctx, &kmsv1.UpdateKeyVersionPolicyRequest{KeyId: p.str("key-id"), MinDecryptionVersion: uint32(n)})
			if err != nil {
				return nil, err
			}
			return versionPolicyDoc{KeyID: r.GetKeyId(), MinDecryptionVersion: r.GetMinDecryptionVersion()}, nil
		})
	register("destroy-key-version", "Destroys one key version's material for good; its ciphertexts can no longer be "+
		"decrypted (raftkms extension).", "key-id! key-version!", func(e *env, p *params) (any, error) {
		n, err := p.int32("key-version")
		if err != nil {
			return nil, err
		}
		r, err := e.kms().DestroyKeyVersion(e.ctx, &kmsv1.DestroyKeyVersionRequest{KeyId: p.str("key-id"), KeyVersion: uint32(n)})
		if err != nil {
			return nil, err
		}
		return destroyKeyVersionDoc{KeyID: r.GetKeyId(), KeyVersion: r.GetKeyVersion()}, nil
	})
}

type createGrantDoc struct {
	GrantToken string `json:"GrantToken"`
	GrantID    string `json:"GrantId"`
}

type grantConstraintsDoc struct {
	EncryptionContextSubset map[string]string `json:"EncryptionContextSubset,omitempty"`
	EncryptionContextEquals map[string]string `json:"EncryptionContextEquals,omitempty"`
}

type grantEntry struct {
	KeyID             string               `json:"KeyId"`
	GrantID           string               `json:"GrantId"`
	Name              string               `json:"Name,omitempty"`
	CreationDate      *awsTime             `json:"CreationDate,omitempty"`
	GranteePrincipal  string               `json:"GranteePrincipal"`
	RetiringPrincipal string               `json:"RetiringPrincipal,omitempty"`
	IssuingAccount    string               `json:"IssuingAccount"`
	Operations        []string             `json:"Operations"`
	Constraints       *grantConstraintsDoc `json:"Constraints,omitempty"`
}

type listGrantsDoc struct {
	Grants []grantEntry `json:"Grants"`
	paging
}

type listKeyPoliciesDoc struct {
	PolicyNames []string `json:"PolicyNames"`
	paging
}

type generateRandomDoc struct {
	Plaintext []byte `json:"Plaintext"`
}

type versionPolicyDoc struct {
	KeyID                string `json:"KeyId"`
	MinDecryptionVersion uint32 `json:"MinDecryptionVersion"`
}

type destroyKeyVersionDoc struct {
	KeyID      string `json:"KeyId"`
	KeyVersion uint32 `json:"KeyVersion"`
}

// parseConstraints reads --constraints: JSON {"EncryptionContextSubset":
// {"k": "v"}} or the shorthand EncryptionContextSubset={k=v,k2=v2}.
func parseConstraints(s string) (*kmsv1.GrantConstraints, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var doc grantConstraintsDoc
	if strings.HasPrefix(s, "{") {
		dec := json.NewDecoder(strings.NewReader(s))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&doc); err != nil {
			return nil, paramf("Error parsing parameter '--constraints': %v", err)
		}
	} else {
		name, body, ok := strings.Cut(s, "=")
		if !ok || !strings.HasPrefix(body, "{") || !strings.HasSuffix(body, "}") {
			return nil, paramf("Error parsing parameter '--constraints': want EncryptionContextSubset={k=v,...} or JSON")
		}
		m, err := parseEncryptionContext(body[1 : len(body)-1])
		if err != nil {
			return nil, err
		}
		switch name {
		case "EncryptionContextSubset":
			doc.EncryptionContextSubset = m
		case "EncryptionContextEquals":
			doc.EncryptionContextEquals = m
		default:
			return nil, paramf("Error parsing parameter '--constraints': unknown key %q", name)
		}
	}
	return &kmsv1.GrantConstraints{EncryptionContextSubset: doc.EncryptionContextSubset,
		EncryptionContextEquals: doc.EncryptionContextEquals}, nil
}

func createGrant(e *env, p *params) (any, error) {
	ops, err := parseStringList("operations", p.list("operations"))
	if err != nil {
		return nil, err
	}
	tokens, err := parseStringList("grant-tokens", p.list("grant-tokens"))
	if err != nil {
		return nil, err
	}
	cs, err := p.text("constraints")
	if err != nil {
		return nil, err
	}
	cons, err := parseConstraints(cs)
	if err != nil {
		return nil, err
	}
	r, err := e.kms().CreateGrant(e.ctx, &kmsv1.CreateGrantRequest{KeyId: p.str("key-id"), GranteePrincipal: p.str("grantee-principal"),
		RetiringPrincipal: p.str("retiring-principal"), Operations: ops, Constraints: cons, GrantTokens: tokens,
		Name: p.str("name"), DryRun: p.flag("dry-run")})
	if err != nil {
		return nil, err
	}
	return createGrantDoc{GrantToken: r.GetGrantToken(), GrantID: r.GetGrantId()}, nil
}

func grantEntries(r *kmsv1.ListGrantsResponse) []grantEntry {
	var out []grantEntry
	for _, g := range r.GetGrants() {
		ge := grantEntry{KeyID: g.GetKeyId(), GrantID: g.GetGrantId(), Name: g.GetName(), CreationDate: tsOf(g.GetCreationDate()),
			GranteePrincipal: g.GetGranteePrincipal(), RetiringPrincipal: g.GetRetiringPrincipal(),
			IssuingAccount: g.GetIssuingAccount(), Operations: g.GetOperations()}
		if c := g.GetConstraints(); c != nil {
			ge.Constraints = &grantConstraintsDoc{EncryptionContextSubset: c.GetEncryptionContextSubset(),
				EncryptionContextEquals: c.GetEncryptionContextEquals()}
		}
		out = append(out, ge)
	}
	return out
}

func listGrants(e *env, p *params) (any, error) {
	pg, err := pagerOf(p)
	if err != nil {
		return nil, err
	}
	items, tail, err := collect(pg, func(marker string, limit int32) ([]grantEntry, string, bool, error) {
		r, err := e.kms().ListGrants(e.ctx, &kmsv1.ListGrantsRequest{KeyId: p.str("key-id"), GrantId: p.str("grant-id"),
			GranteePrincipal: p.str("grantee-principal"), Limit: limit, Marker: marker})
		if err != nil {
			return nil, "", false, err
		}
		return grantEntries(r), r.GetNextMarker(), r.GetTruncated(), nil
	})
	if err != nil {
		return nil, err
	}
	return listGrantsDoc{Grants: items, paging: tail}, nil
}

func listRetirableGrants(e *env, p *params) (any, error) {
	pg, err := pagerOf(p)
	if err != nil {
		return nil, err
	}
	items, tail, err := collect(pg, func(marker string, limit int32) ([]grantEntry, string, bool, error) {
		r, err := e.kms().ListRetirableGrants(e.ctx, &kmsv1.ListRetirableGrantsRequest{RetiringPrincipal: p.str("retiring-principal"),
			Limit: limit, Marker: marker})
		if err != nil {
			return nil, "", false, err
		}
		return grantEntries(r), r.GetNextMarker(), r.GetTruncated(), nil
	})
	if err != nil {
		return nil, err
	}
	return listGrantsDoc{Grants: items, paging: tail}, nil
}

func listKeyPolicies(e *env, p *params) (any, error) {
	pg, err := pagerOf(p)
	if err != nil {
		return nil, err
	}
	items, tail, err := collect(pg, func(marker string, limit int32) ([]string, string, bool, error) {
		r, err := e.kms().ListKeyPolicies(e.ctx, &kmsv1.ListKeyPoliciesRequest{KeyId: p.str("key-id"), Limit: limit, Marker: marker})
		if err != nil {
			return nil, "", false, err
		}
		return r.GetPolicyNames(), r.GetNextMarker(), r.GetTruncated(), nil
	})
	if err != nil {
		return nil, err
	}
	return listKeyPoliciesDoc{PolicyNames: items, paging: tail}, nil
}
