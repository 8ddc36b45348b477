package rpc

import (
	"context"
	"google.golang.org/grpc/codes"
	"strings"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
)

// checkAliasName applies AWS's alias rules: alias/ then 1-250 of
// [a-zA-Z0-9/_-]; the alias/aws/ prefix is reserved.
func checkAliasName(name string) error {
	rest, ok := strings.CutPrefix(name, "alias/")
	if !ok || rest == "" || len(name) > 256 {
		return validationErr("AliasName must begin with alias/ and be at most 256 characters")
	}
	if strings.HasPrefix(name, "alias/aws/") {
		return &apiError{code: codes.PermissionDenied, name: "NotAuthorizedException", msg: "the alias/aws/ prefix is reserved"}
	}
	for _, c := range rest {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '/' || c == '_' || c == '-') {
			return validationErr("AliasName may contain only letters, digits, /, _ and -")
		}
	}
	return nil
}

func (s kmsService) CreateAlias(ctx context.Context, req *kmsv1.CreateAliasRequest) (*kmsv1.CreateAliasResponse, error) {
	if err := checkAliasName(req.AliasName); err != nil {
		return nil, err
	}
	k, err := s.writeKey(ctx, req.TargetKeyId, "kms:CreateAlias")
	if err != nil {
		return nil, err
	}
	_, err = s.propose(ctx, &eventsv1.Envelope{Event: &eventsv1.Envelope_CreateAlias{CreateAlias: &eventsv1.CreateAlias{
		AliasName: req.AliasName, TargetKeyId: k.ID}}})
	return &kmsv1.CreateAliasResponse{}, err
}

// UpdateAlias re-points an alias. As in AWS KMS, the caller needs
// kms:UpdateAlias on the alias's current key and on the new one, so nobody
// can take over an alias someone else's callers rely on. The event carries
// the current key that was checked, so a change of target in between is a
// deterministic rejection rather than a change nobody authorized.
func (s kmsService) UpdateAlias(ctx context.Context, req *kmsv1.UpdateAliasRequest) (*kmsv1.UpdateAliasResponse, error) {
	if err := checkAliasName(req.AliasName); err != nil {
		return nil, err
	}
	if req.TargetKeyId == "" {
		return nil, validationErr("TargetKeyId is required")
	}
	cur, err := s.writeKey(ctx, req.AliasName, "kms:UpdateAlias")
	if err != nil {
		return nil, err
	}
	k, err := s.writeKey(ctx, req.TargetKeyId, "kms:UpdateAlias")
	if err != nil {
		return nil, err
	}
	_, err = s.propose(ctx, &eventsv1.Envelope{Event: &eventsv1.Envelope_UpdateAlias{UpdateAlias: &eventsv1.UpdateAlias{
		AliasName: req.AliasName, TargetKeyId: k.ID, ExpectedTargetKeyId: cur.ID}}})
	return &kmsv1.UpdateAliasResponse{}, err
}

// DeleteAlias needs kms:DeleteAlias on the alias's current key, which the
// event names as its guard.
func (s kmsService) DeleteAlias(ctx context.Context, req *kmsv1.DeleteAliasRequest) (*kmsv1.DeleteAliasResponse, error) {
	if err := checkAliasName(req.AliasName); err != nil {
		return nil, err
	}
	cur, err := s.writeKey(ctx, req.AliasName, "kms:DeleteAlias")
	if err != nil {
		return nil, err
	}
	_, err = s.propose(ctx, &eventsv1.Envelope{Event: &eventsv1.Envelope_DeleteAlias{DeleteAlias: &eventsv1.DeleteAlias{
		AliasName: req.AliasName, ExpectedTargetKeyId: cur.ID}}})
	return &kmsv1.DeleteAliasResponse{}, err
}

func (s kmsService) ListAliases(ctx context.Context, req *kmsv1.ListAliasesRequest) (*kmsv1.ListAliasesResponse, error) {
	keyID := ""
	if req.KeyId != "" {
		k, err := s.readKey(ctx, req.KeyId, "kms:ListAliases")
		if err != nil {
			return nil, err
		}
		keyID = k.ID
	} else if err := s.readBarrier(ctx); err != nil {
		return nil, err
	}
	page, next, err := pageOf(s.fsm.Aliases(keyID), req.Marker, req.Limit)
	if err != nil {
		return nil, err
	}
	resp := &kmsv1.ListAliasesResponse{NextMarker: next, Truncated: next != ""}
	for _, a := range page {
		resp.Aliases = append(resp.Aliases, &kmsv1.AliasListEntry{AliasName: a.Name, AliasArn: s.aliasARN(a.Name),
			TargetKeyId: a.KeyID, CreationDate: ts(a.CreatedAt), LastUpdatedDate: ts(a.UpdatedAt)})
	}
	return resp, nil
}
