package rpc

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"slices"
	"sort"
	"strings"

	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/pki"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Grants (as AWS KMS's): a key's grants are replicated state, so the
// decision "does a grant allow this?" is the same on every node, and since
// reads are linearizable a grant is in force everywhere as soon as
// CreateGrant returns. Grant tokens, which AWS needs to bridge its eventual
// consistency, are accepted wherever AWS takes them and never needed.

// grantOperations are the operations a grant may give.
var grantOperations = map[string]bool{
	"Decrypt": true, "Encrypt": true, "GenerateDataKey": true, "GenerateDataKeyWithoutPlaintext": true,
	"ReEncryptFrom": true, "ReEncryptTo": true, "Sign": true, "Verify": true, "GetPublicKey": true,
	"CreateGrant": true, "RetireGrant": true, "DescribeKey": true, "GenerateDataKeyPair": true,
	"GenerateDataKeyPairWithoutPlaintext": true, "GenerateMac": true, "VerifyMac": true,
}

const (
	maxGrantTokens    = 10
	maxGrantTokenLen  = 8192
	maxGrantName      = 256
	maxPrincipalLen   = 256
	grantTokenVersion = "rkg1."
)

// withRequest keeps the call's request for the authorization decision
// (its encryption context, alias and grant operations feed conditions and
// grant constraints).
func withRequest(ctx context.Context, req any) context.Context {
	return withCall(ctx, func(ci *callInfo) { ci.req = req })
}

func requestOf(ctx context.Context) proto.Message {
	if ci := callOf(ctx); ci != nil {
		m, _ := ci.req.(proto.Message)
		return m
	}
	return nil
}

// stringMapField reads a map<string,string> field of msg by name.
func stringMapField(msg protoreflect.Message, name protoreflect.Name) map[string]string {
	fd := msg.Descriptor().Fields().ByName(name)
	if fd == nil || !fd.IsMap() || fd.MapKey().Kind() != protoreflect.StringKind || fd.MapValue().Kind() != protoreflect.StringKind {
		return nil
	}
	m := msg.Get(fd).Map()
	if m.Len() == 0 {
		return nil
	}
	out := make(map[string]string, m.Len())
	m.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
		out[k.String()] = v.String()
		return true
	})
	return out
}

func stringField(msg protoreflect.Message, name protoreflect.Name) string {
	fd := msg.Descriptor().Fields().ByName(name)
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.IsList() {
		return ""
	}
	return msg.Get(fd).String()
}

// factsFor gathers what conditions and grant constraints look at, for
// action on the call's request.
func factsFor(ctx context.Context, action, account string) *condFacts {
	f := &condFacts{callerAccount: account}
	req := requestOf(ctx)
	if req == nil {
		return f
	}
	msg := req.ProtoReflect()
	ecField, refField := protoreflect.Name("encryption_context"), protoreflect.Name("key_id")
	switch action {
	case "kms:ReEncryptFrom":
		ecField, refField = "source_encryption_context", "source_key_id"
	case "kms:ReEncryptTo":
		ecField, refField = "destination_encryption_context", "destination_key_id"
	}
	f.encryptionContext = stringMapField(msg, ecField)
	if g, ok := req.(*kmsv1.CreateGrantRequest); ok {
		f.grantOperations = slices.Clone(g.Operations)
		sort.Strings(f.grantOperations)
		// For CreateGrant the context is the one the grant will allow.
		if c := g.GetConstraints(); c != nil {
			f.encryptionContext = map[string]string{}
			for k, v := range c.EncryptionContextSubset {
				f.encryptionContext[k] = v
			}
			for k, v := range c.EncryptionContextEquals {
				f.encryptionContext[k] = v
			}
		}
	}
	ref := stringField(msg, refField)
	if i := strings.Index(ref, "alias/"); i >= 0 && (i == 0 || ref[i-1] == ':') {
		f.requestAlias = ref[i:]
	}
	return f
}

// grantAllows reports whether one of the key's grants gives identity the
// action for a request with encryption context ec.
func grantAllows(k *fsm.Key, identity, action string, ec map[string]string) bool {
	op := strings.TrimPrefix(action, "kms:")
	for i := range k.Grants {
		if g := &k.Grants[i]; g.Grantee == identity && g.Allows(op, ec) {
			return true
		}
	}
	return false
}

func checkGrantTokens(tokens []string) error {
	if len(tokens) > maxGrantTokens {
		return validationErr("at most %d GrantTokens may be given", maxGrantTokens)
	}
	for _, t := range tokens {
		if t == "" || len(t) > maxGrantTokenLen {
			return validationErr("a grant token has 1 to %d characters", maxGrantTokenLen)
		}
	}
	return nil
}

func dryRunErr(op string) error {
	return &apiError{code: codes.FailedPrecondition, name: "DryRunOperationException",
		msg: "the " + op + " request would have succeeded, but the DryRun flag is set"}
}

func invalidGrantToken(format string, args ...any) error {
	e := validationErr(format, args...).(*apiError)
	e.name = "InvalidGrantTokenException"
	return e
}

// newGrant chooses a grant's ID and token before it is proposed. The token
// names the key and the grant, so RetireGrant by token needs no key ID.
func (s *Server) newGrant(keyID string) (id, token string, err error) {
	var b [48]byte
	if _, err := s.rand.Read(b[:]); err != nil {
		return "", "", internalErr("no randomness: %v", err)
	}
	id = hex.EncodeToString(b[:32])
	token = grantTokenVersion + base64.RawURLEncoding.EncodeToString([]byte(keyID+"/"+id+"/"+hex.EncodeToString(b[32:])))
	return id, token, nil
}

func parseGrantToken(token string) (keyID, grantID string, err error) {
	raw, derr := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(token, grantTokenVersion))
	parts := strings.Split(string(raw), "/")
	if !strings.HasPrefix(token, grantTokenVersion) || derr != nil || len(parts) != 3 || parts[0] == "" || len(parts[1]) != 64 {
		return "", "", invalidGrantToken("the grant token is not valid")
	}
	return parts[0], parts[1], nil
}

func tagsOfMap(m map[string]string) []*eventsv1.Tag {
	out := make([]*eventsv1.Tag, 0, len(m))
	for k, v := range m {
		out = append(out, &eventsv1.Tag{Key: k, Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func checkPrincipal(name, p string, required bool) error {
	if p == "" && required {
		return validationErr("%s is required", name)
	}
	if len(p) > maxPrincipalLen || strings.ContainsAny(p, "\x00\n") {
		return validationErr("%s must have at most %d characters and no control characters", name, maxPrincipalLen)
	}
	return nil
}

func (s kmsService) CreateGrant(ctx context.Context, req *kmsv1.CreateGrantRequest) (*kmsv1.CreateGrantResponse, error) {
	if err := checkPrincipal("GranteePrincipal", req.GranteePrincipal, true); err != nil {
		return nil, err
	}
	if err := checkPrincipal("RetiringPrincipal", req.RetiringPrincipal, false); err != nil {
		return nil, err
	}
	if len(req.Name) > maxGrantName {
		return nil, validationErr("Name must have at most %d characters", maxGrantName)
	}
	if err := checkGrantTokens(req.GrantTokens); err != nil {
		return nil, err
	}
	if len(req.Operations) == 0 {
		return nil, validationErr("Operations is required")
	}
	ops := slices.Clone(req.Operations)
	sort.Strings(ops)
	ops = slices.Compact(ops)
	for _, op := range ops {
		if !grantOperations[op] {
			return nil, validationErr("%q is not a grant operation", op)
		}
	}
	c := req.GetConstraints()
	if len(c.GetEncryptionContextSubset()) > 0 && len(c.GetEncryptionContextEquals()) > 0 {
		return nil, validationErr("give EncryptionContextSubset or EncryptionContextEquals, not both")
	}
	k, err := s.writeKey(ctx, req.KeyId, "kms:CreateGrant")
	if err != nil {
		return nil, err
	}
	if err := s.checkGrantSubset(ctx, k, ops); err != nil {
		return nil, err
	}
	if req.DryRun {
		return nil, dryRunErr("CreateGrant")
	}
	id, token, err := s.newGrant(k.ID)
	if err != nil {
		return nil, err
	}
	ev := &eventsv1.CreateGrant{KeyId: k.ID, GrantId: id, GrantToken: token, Name: req.Name,
		GranteePrincipal: req.GranteePrincipal, RetiringPrincipal: req.RetiringPrincipal, Operations: ops}
	if c != nil && (len(c.EncryptionContextSubset) > 0 || len(c.EncryptionContextEquals) > 0) {
		ev.Constraints = &eventsv1.GrantConstraints{EncryptionContextSubset: tagsOfMap(c.EncryptionContextSubset),
			EncryptionContextEquals: tagsOfMap(c.EncryptionContextEquals)}
	}
	res, err := s.propose(ctx, &eventsv1.Envelope{Event: &eventsv1.Envelope_CreateGrant{CreateGrant: ev}})
	if err != nil {
		return nil, err
	}
	// The grant may be an existing one (same name and parameters, or a
	// retried request): answer with its ID and token.
	if nk, ok := s.fsm.Key(res.KeyID); ok {
		if g := nk.FindGrant(res.GrantID); g != nil {
			return &kmsv1.CreateGrantResponse{GrantId: g.ID, GrantToken: g.Token}, nil
		}
	}
	if res.GrantID == id {
		return &kmsv1.CreateGrantResponse{GrantId: id, GrantToken: token}, nil
	}
	return nil, notFoundErr("the grant this request made was retired or revoked meanwhile")
}

func (s *Server) grantEntry(k *fsm.Key, g *fsm.Grant) *kmsv1.GrantListEntry {
	e := &kmsv1.GrantListEntry{KeyId: s.keyARN(k.ID), GrantId: g.ID, Name: g.Name, CreationDate: ts(g.CreatedAt),
		GranteePrincipal: g.Grantee, RetiringPrincipal: g.Retiring, IssuingAccount: s.cfg.ARN.Account,
		Operations: slices.Clone(g.Operations)}
	if len(g.ECSubset) > 0 || len(g.ECEquals) > 0 {
		e.Constraints = &kmsv1.GrantConstraints{}
		if len(g.ECSubset) > 0 {
			e.Constraints.EncryptionContextSubset = map[string]string{}
			for _, t := range g.ECSubset {
				e.Constraints.EncryptionContextSubset[t.Key] = t.Value
			}
		}
		if len(g.ECEquals) > 0 {
			e.Constraints.EncryptionContextEquals = map[string]string{}
			for _, t := range g.ECEquals {
				e.Constraints.EncryptionContextEquals[t.Key] = t.Value
			}
		}
	}
	return e
}

func (s kmsService) ListGrants(ctx context.Context, req *kmsv1.ListGrantsRequest) (*kmsv1.ListGrantsResponse, error) {
	k, err := s.readKey(ctx, req.KeyId, "kms:ListGrants")
	if err != nil {
		return nil, err
	}
	var all []*kmsv1.GrantListEntry
	for i := range k.Grants {
		g := &k.Grants[i]
		if (req.GrantId == "" || g.ID == req.GrantId) && (req.GranteePrincipal == "" || g.Grantee == req.GranteePrincipal) {
			all = append(all, s.grantEntry(k, g))
		}
	}
	page, next, err := pageOf(all, req.Marker, req.Limit)
	if err != nil {
		return nil, err
	}
	return &kmsv1.ListGrantsResponse{Grants: page, NextMarker: next, Truncated: next != ""}, nil
}

func (s kmsService) ListRetirableGrants(ctx context.Context, req *kmsv1.ListRetirableGrantsRequest) (*kmsv1.ListGrantsResponse, error) {
	if err := checkPrincipal("RetiringPrincipal", req.RetiringPrincipal, true); err != nil {
		return nil, err
	}
	if c := callerOf(ctx); s.cfg.Auth.Enabled && c.role != pki.RoleAdmin && c.identity != req.RetiringPrincipal {
		return nil, accessDenied("%s may list only the grants it can retire", c.identity)
	}
	if err := s.readBarrier(ctx); err != nil {
		return nil, err
	}
	var all []*kmsv1.GrantListEntry
	s.fsm.ForEachKey(func(k *fsm.Key) bool {
		if k.State == fsm.KeyStateDeleted {
			return true
		}
		for i := range k.Grants {
			if g := &k.Grants[i]; g.Retiring == req.RetiringPrincipal {
				all = append(all, s.grantEntry(k, g))
			}
		}
		return true
	})
	page, next, err := pageOf(all, req.Marker, req.Limit)
	if err != nil {
		return nil, err
	}
	return &kmsv1.ListGrantsResponse{Grants: page, NextMarker: next, Truncated: next != ""}, nil
}

// RetireGrant is allowed to the grant's retiring principal, to its grantee
// when the grant gives RetireGrant, and to whom the key policy allows
// kms:RetireGrant.
func (s kmsService) RetireGrant(ctx context.Context, req *kmsv1.RetireGrantRequest) (*kmsv1.RetireGrantResponse, error) {
	ref, grantID := req.KeyId, req.GrantId
	if req.GrantToken != "" {
		if len(req.GrantToken) > maxGrantTokenLen {
			return nil, invalidGrantToken("the grant token is not valid")
		}
		kid, gid, err := parseGrantToken(req.GrantToken)
		if err != nil {
			return nil, err
		}
		if grantID != "" && grantID != gid {
			return nil, validationErr("GrantId does not match the grant token")
		}
		if ref == "" {
			ref = kid
		}
		grantID = gid
	} else if ref == "" || grantID == "" {
		return nil, validationErr("give GrantToken, or KeyId and GrantId")
	}
	if s.node.IsLeader() {
		if err := s.node.CatchUp(ctx); err != nil {
			return nil, err
		}
	}
	k, err := s.resolve(ref, "kms:RetireGrant")
	if err != nil {
		return nil, err
	}
	g := k.FindGrant(grantID)
	if g == nil {
		return nil, notFoundErr("grant %s is not found on key %s", grantID, k.ID)
	}
	if req.GrantToken != "" && g.Token != req.GrantToken {
		return nil, invalidGrantToken("the grant token does not belong to grant %s", grantID)
	}
	c := callerOf(ctx)
	if s.cfg.Auth.Enabled && c.identity != g.Retiring && !(c.identity == g.Grantee && slices.Contains(g.Operations, "RetireGrant")) {
		if err := s.authorize(ctx, k, "kms:RetireGrant"); err != nil {
			return nil, err
		}
	}
	if req.DryRun {
		return nil, dryRunErr("RetireGrant")
	}
	_, err = s.propose(ctx, &eventsv1.Envelope{Event: &eventsv1.Envelope_RetireGrant{RetireGrant: &eventsv1.RetireGrant{KeyId: k.ID, GrantId: grantID}}})
	if err != nil {
		return nil, err
	}
	return &kmsv1.RetireGrantResponse{}, nil
}

func (s kmsService) RevokeGrant(ctx context.Context, req *kmsv1.RevokeGrantRequest) (*kmsv1.RevokeGrantResponse, error) {
	if req.GrantId == "" {
		return nil, validationErr("GrantId is required")
	}
	k, err := s.writeKey(ctx, req.KeyId, "kms:RevokeGrant")
	if err != nil {
		return nil, err
	}
	if k.FindGrant(req.GrantId) == nil {
		return nil, notFoundErr("grant %s is not found on key %s", req.GrantId, k.ID)
	}
	if req.DryRun {
		return nil, dryRunErr("RevokeGrant")
	}
	_, err = s.propose(ctx, &eventsv1.Envelope{Event: &eventsv1.Envelope_RevokeGrant{RevokeGrant: &eventsv1.RevokeGrant{KeyId: k.ID, GrantId: req.GrantId}}})
	if err != nil {
		return nil, err
	}
	return &kmsv1.RevokeGrantResponse{}, nil
}

func (s kmsService) ListKeyPolicies(ctx context.Context, req *kmsv1.ListKeyPoliciesRequest) (*kmsv1.ListKeyPoliciesResponse, error) {
	if _, err := s.readKey(ctx, req.KeyId, "kms:ListKeyPolicies"); err != nil {
		return nil, err
	}
	page, next, err := pageOf([]string{"default"}, req.Marker, req.Limit)
	if err != nil {
		return nil, err
	}
	return &kmsv1.ListKeyPoliciesResponse{PolicyNames: page, NextMarker: next, Truncated: next != ""}, nil
}

// GenerateRandom answers from the answering node's CSPRNG; nothing is
// replicated or logged.
func (s kmsService) GenerateRandom(ctx context.Context, req *kmsv1.GenerateRandomRequest) (*kmsv1.GenerateRandomResponse, error) {
	if req.NumberOfBytes < 1 || req.NumberOfBytes > 1024 {
		return nil, validationErr("NumberOfBytes must be between 1 and 1024")
	}
	b := make([]byte, req.NumberOfBytes)
	if _, err := s.rand.Read(b); err != nil {
		return nil, internalErr("no randomness: %v", err)
	}
	return &kmsv1.GenerateRandomResponse{Plaintext: b}, nil
}

// checkGrantSubset applies AWS's rule for a grantee that creates a grant
// through its own grant's CreateGrant operation (not through the key
// policy): the new grant may give only operations that grant gives, and
// must satisfy that grant's constraints.
func (s kmsService) checkGrantSubset(ctx context.Context, k *fsm.Key, ops []string) error {
	c := callerOf(ctx)
	if !s.cfg.Auth.Enabled || c.role == pki.RoleAdmin {
		return nil
	}
	facts := factsFor(ctx, "kms:CreateGrant", s.cfg.ARN.Account)
	if s.policyDecision(k, c.identity, "kms:CreateGrant", facts) == policyAllow {
		return nil
	}
	for i := range k.Grants {
		g := &k.Grants[i]
		if g.Grantee != c.identity || !g.Allows("CreateGrant", facts.encryptionContext) {
			continue
		}
		subset := true
		for _, op := range ops {
			if !slices.Contains(g.Operations, op) {
				subset = false
				break
			}
		}
		if subset {
			return nil
		}
	}
	return accessDenied("%s may create grants only with operations and constraints of its own grant on key %s", c.identity, k.ID)
}

// dryRun reports whether a request sets DryRun (the cryptographic calls
// carry it; the interceptor answers DryRunOperationException after the
// call succeeded, and the grant calls check it before proposing).
func dryRun(req any) bool {
	if r, ok := req.(interface{ GetDryRun() bool }); ok {
		return r.GetDryRun() // the generated getter of a dry_run field
	}
	msg, ok := req.(proto.Message)
	if !ok {
		return false
	}
	pr := msg.ProtoReflect()
	fd := pr.Descriptor().Fields().ByName("dry_run")
	return fd != nil && fd.Kind() == protoreflect.BoolKind && pr.Get(fd).Bool()
}
