package rpc

import (
	"context"
	"strings"
	"time"

	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// kmsService implements KeyManagementService on top of Server.
type kmsService struct {
	kmsv1.UnimplementedKeyManagementServiceServer
	*Server
}

func ts(unixNano int64) *timestamppb.Timestamp {
	if unixNano == 0 {
		return nil
	}
	return timestamppb.New(time.Unix(0, unixNano))
}

// originName is the AWS spelling of an origin.
func originName(o fsm.Origin) string {
	switch o {
	case fsm.OriginExternal:
		return "EXTERNAL"
	case fsm.OriginService:
		return "AWS_KMS"
	}
	return "AWS_KMS"
}

func expirationName(m fsm.ExpirationModel) string {
	switch m {
	case eventsv1.ExpirationModel_EXPIRATION_MODEL_KEY_MATERIAL_EXPIRES:
		return "KEY_MATERIAL_EXPIRES"
	case eventsv1.ExpirationModel_EXPIRATION_MODEL_KEY_MATERIAL_DOES_NOT_EXPIRE:
		return "KEY_MATERIAL_DOES_NOT_EXPIRE"
	}
	return ""
}

// keyMetadata describes a key as AWS KMS's DescribeKey does.
func (s *Server) keyMetadata(k *fsm.Key) *kmsv1.KeyMetadata {
	md := &kmsv1.KeyMetadata{
		AwsAccountId:          s.cfg.ARN.Account,
		KeyId:                 k.ID,
		Arn:                   s.keyARN(k.ID),
		CreationDate:          ts(k.CreatedAt),
		Enabled:               k.State == fsm.KeyStateEnabled,
		Description:           k.Description,
		KeyUsage:              k.KeyUsage,
		KeyState:              fsm.StateName(k.State),
		DeletionDate:          ts(k.DeletionAt),
		ValidTo:               ts(k.ValidTo),
		Origin:                originName(k.Origin),
		KeyManager:            "CUSTOMER",
		KeySpec:               k.KeySpec,
		CustomerMasterKeySpec: k.KeySpec,
		ExpirationModel:       expirationName(k.Expiration),
		CurrentKeyVersion:     k.CurrentVersion(),
		MinDecryptionVersion:  max(k.MinDecryptionVersion, 1),
	}
	if k.Origin == fsm.OriginExternal && k.HasMaterial() {
		md.CurrentKeyMaterialId = materialID(k.Versions[len(k.Versions)-1].Fingerprint)
	}
	algorithmLists(md, k)
	if k.Origin == fsm.OriginService {
		md.KeyManager = "AWS"
	}
	return md
}

func (s kmsService) CreateKey(ctx context.Context, req *kmsv1.CreateKeyRequest) (*kmsv1.CreateKeyResponse, error) {
	if err := checkDescription(req.Description); err != nil {
		return nil, err
	}
	if err := checkPolicySize(req.Policy); err != nil {
		return nil, err
	}
	tags, err := checkTags(req.Tags)
	if err != nil {
		return nil, err
	}
	spec, usage, err := keySpecOf(req)
	if err != nil {
		return nil, err
	}
	id, err := s.newKeyID()
	if err != nil {
		return nil, err
	}
	policy := req.Policy
	if policy == "" {
		// The default policy gives the creator every action on the key.
		policy = defaultPolicy(s.principal(ctx))
	} else if p, err := parsePolicy(policy); err != nil {
		return nil, err
	} else if err := s.checkLockout(ctx, p, req.BypassPolicyLockoutSafetyCheck); err != nil {
		return nil, err
	}
	ev := &eventsv1.CreateKey{KeyId: id, Description: req.Description, Policy: policy, Tags: tags}
	switch strings.ToUpper(req.Origin) {
	case "", "AWS_KMS":
		ev.Origin = fsm.OriginGenerated
	case "EXTERNAL":
		ev.Origin = fsm.OriginExternal
	default:
		return nil, unsupportedErr("Origin %s is not supported; use AWS_KMS or EXTERNAL", req.Origin)
	}
	if req.Managed {
		// A default managed key: the cluster rotates it on its own period,
		// users cannot (UnsupportedOperationException).
		if ev.Origin == fsm.OriginExternal {
			return nil, unsupportedErr("managed keys cannot have origin EXTERNAL")
		}
		ev.Origin = fsm.OriginService
		ev.RotationPeriodSeconds = int64(s.limits.ManagedPeriod / time.Second)
	}
	if err := checkSpecOrigin(spec, ev, usage); err != nil {
		return nil, err
	}
	if ev.Origin != fsm.OriginExternal {
		if ev.SealedMaterial, err = s.newSealedMaterialFor(id, spec); err != nil {
			return nil, err
		}
	}
	res, err := s.propose(ctx, &eventsv1.Envelope{Event: &eventsv1.Envelope_CreateKey{CreateKey: ev}})
	if err != nil {
		return nil, err
	}
	// A retried request returns the key made by the first attempt.
	k, ok := s.fsm.Key(res.KeyID)
	if !ok {
		return nil, internalErr("key %s applied but not found", res.KeyID)
	}
	return &kmsv1.CreateKeyResponse{KeyMetadata: s.keyMetadata(k)}, nil
}

func (s kmsService) DescribeKey(ctx context.Context, req *kmsv1.DescribeKeyRequest) (*kmsv1.DescribeKeyResponse, error) {
	k, err := s.readKey(ctx, req.KeyId, "kms:DescribeKey")
	if err != nil {
		return nil, err
	}
	return &kmsv1.DescribeKeyResponse{KeyMetadata: s.keyMetadata(k)}, nil
}

// pageLimit applies AWS's ListKeys bounds: 1..1000, default 100.
func pageLimit(limit int32) (int, error) {
	switch {
	case limit == 0:
		return 100, nil
	case limit < 1 || limit > 1000:
		return 0, validationErr("Limit must be between 1 and 1000")
	}
	return int(limit), nil
}

func (s kmsService) ListKeys(ctx context.Context, req *kmsv1.ListKeysRequest) (*kmsv1.ListKeysResponse, error) {
	limit, err := pageLimit(req.Limit)
	if err != nil {
		return nil, err
	}
	if err := s.readBarrier(ctx); err != nil {
		return nil, err
	}
	if req.Marker != "" {
		if _, ok := s.fsm.Key(req.Marker); !ok {
			return nil, validationErr("Marker is not valid")
		}
	}
	keys, more := s.fsm.Keys(req.Marker, limit)
	resp := &kmsv1.ListKeysResponse{Truncated: more}
	for _, k := range keys {
		if k.State == fsm.KeyStateDeleted {
			continue // gone, as in AWS KMS (a page may come back short)
		}
		resp.Keys = append(resp.Keys, &kmsv1.KeyListEntry{KeyId: k.ID, KeyArn: s.keyARN(k.ID)})
	}
	if more && len(keys) > 0 {
		resp.NextMarker = keys[len(keys)-1].ID
	}
	return resp, nil
}

// keyEvent proposes an event about one existing key.
func (s kmsService) keyEvent(ctx context.Context, ref, action string, make func(id string) *eventsv1.Envelope) (*fsm.Result, error) {
	k, err := s.writeKey(ctx, ref, action)
	if err != nil {
		return nil, err
	}
	return s.propose(ctx, make(k.ID))
}

func (s kmsService) EnableKey(ctx context.Context, req *kmsv1.EnableKeyRequest) (*kmsv1.EnableKeyResponse, error) {
	_, err := s.keyEvent(ctx, req.KeyId, "kms:EnableKey", func(id string) *eventsv1.Envelope {
		return &eventsv1.Envelope{Event: &eventsv1.Envelope_EnableKey{EnableKey: &eventsv1.EnableKey{KeyId: id}}}
	})
	return &kmsv1.EnableKeyResponse{}, err
}

func (s kmsService) DisableKey(ctx context.Context, req *kmsv1.DisableKeyRequest) (*kmsv1.DisableKeyResponse, error) {
	_, err := s.keyEvent(ctx, req.KeyId, "kms:DisableKey", func(id string) *eventsv1.Envelope {
		return &eventsv1.Envelope{Event: &eventsv1.Envelope_DisableKey{DisableKey: &eventsv1.DisableKey{KeyId: id}}}
	})
	return &kmsv1.DisableKeyResponse{}, err
}

func (s kmsService) ScheduleKeyDeletion(ctx context.Context, req *kmsv1.ScheduleKeyDeletionRequest) (*kmsv1.ScheduleKeyDeletionResponse, error) {
	l := s.limits
	window, err := periodSeconds(req.PendingWindowInDays, req.PendingWindowSeconds, DefaultPendingWindow,
		l.MinPendingWindow, l.MaxPendingWindow, "PendingWindowInDays")
	if err != nil {
		return nil, err
	}
	res, err := s.keyEvent(ctx, req.KeyId, "kms:ScheduleKeyDeletion", func(id string) *eventsv1.Envelope {
		return &eventsv1.Envelope{Event: &eventsv1.Envelope_ScheduleKeyDeletion{ScheduleKeyDeletion: &eventsv1.ScheduleKeyDeletion{
			KeyId: id, PendingWindowSeconds: window}}}
	})
	if err != nil {
		return nil, err
	}
	return &kmsv1.ScheduleKeyDeletionResponse{KeyId: s.keyARN(res.KeyID), DeletionDate: ts(res.DeletionTime),
		KeyState: "PendingDeletion", PendingWindowInDays: int32(window / 86400)}, nil
}

func (s kmsService) CancelKeyDeletion(ctx context.Context, req *kmsv1.CancelKeyDeletionRequest) (*kmsv1.CancelKeyDeletionResponse, error) {
	res, err := s.keyEvent(ctx, req.KeyId, "kms:CancelKeyDeletion", func(id string) *eventsv1.Envelope {
		return &eventsv1.Envelope{Event: &eventsv1.Envelope_CancelKeyDeletion{CancelKeyDeletion: &eventsv1.CancelKeyDeletion{KeyId: id}}}
	})
	if err != nil {
		return nil, err
	}
	return &kmsv1.CancelKeyDeletionResponse{KeyId: s.keyARN(res.KeyID)}, nil
}

func (s kmsService) UpdateKeyDescription(ctx context.Context, req *kmsv1.UpdateKeyDescriptionRequest) (*kmsv1.UpdateKeyDescriptionResponse, error) {
	if err := checkDescription(req.Description); err != nil {
		return nil, err
	}
	_, err := s.keyEvent(ctx, req.KeyId, "kms:UpdateKeyDescription", func(id string) *eventsv1.Envelope {
		return &eventsv1.Envelope{Event: &eventsv1.Envelope_UpdateKeyDescription{UpdateKeyDescription: &eventsv1.UpdateKeyDescription{
			KeyId: id, Description: req.Description}}}
	})
	return &kmsv1.UpdateKeyDescriptionResponse{}, err
}

func (s kmsService) TagResource(ctx context.Context, req *kmsv1.TagResourceRequest) (*kmsv1.TagResourceResponse, error) {
	if len(req.Tags) == 0 {
		return nil, validationErr("Tags is required")
	}
	tags, err := checkTags(req.Tags)
	if err != nil {
		return nil, err
	}
	ev := &eventsv1.TagKey{Tags: tags}
	_, err = s.keyEvent(ctx, req.KeyId, "kms:TagResource", func(id string) *eventsv1.Envelope {
		ev.KeyId = id
		return &eventsv1.Envelope{Event: &eventsv1.Envelope_TagKey{TagKey: ev}}
	})
	return &kmsv1.TagResourceResponse{}, err
}

func (s kmsService) UntagResource(ctx context.Context, req *kmsv1.UntagResourceRequest) (*kmsv1.UntagResourceResponse, error) {
	if len(req.TagKeys) == 0 {
		return nil, validationErr("TagKeys is required")
	}
	if err := checkTagKeys(req.TagKeys); err != nil {
		return nil, err
	}
	_, err := s.keyEvent(ctx, req.KeyId, "kms:UntagResource", func(id string) *eventsv1.Envelope {
		return &eventsv1.Envelope{Event: &eventsv1.Envelope_UntagKey{UntagKey: &eventsv1.UntagKey{KeyId: id, TagKeys: req.TagKeys}}}
	})
	return &kmsv1.UntagResourceResponse{}, err
}

func (s kmsService) PutKeyPolicy(ctx context.Context, req *kmsv1.PutKeyPolicyRequest) (*kmsv1.PutKeyPolicyResponse, error) {
	if req.Policy == "" {
		return nil, validationErr("Policy is required")
	}
	if err := checkPolicySize(req.Policy); err != nil {
		return nil, err
	}
	p, err := parsePolicy(req.Policy)
	if err != nil {
		return nil, err
	}
	k, err := s.writeKey(ctx, req.KeyId, "kms:PutKeyPolicy")
	if err != nil {
		return nil, err
	}
	// After authorization, as AWS: only a caller who may change the policy
	// learns that the new one would lock it out.
	if err := s.checkLockout(ctx, p, req.BypassPolicyLockoutSafetyCheck); err != nil {
		return nil, err
	}
	_, err = s.propose(ctx, &eventsv1.Envelope{Event: &eventsv1.Envelope_PutKeyPolicy{PutKeyPolicy: &eventsv1.PutKeyPolicy{
		KeyId: k.ID, PolicyName: req.PolicyName, Policy: req.Policy}}})
	return &kmsv1.PutKeyPolicyResponse{}, err
}

func (s kmsService) GetKeyPolicy(ctx context.Context, req *kmsv1.GetKeyPolicyRequest) (*kmsv1.GetKeyPolicyResponse, error) {
	if req.PolicyName != "" && req.PolicyName != "default" {
		return nil, notFoundErr("policy %s is not found; the only policy name is default", req.PolicyName)
	}
	k, err := s.readKey(ctx, req.KeyId, "kms:GetKeyPolicy")
	if err != nil {
		return nil, err
	}
	p := k.Policy
	if p == "" && len(k.History) > 0 {
		p = defaultPolicy(k.History[0].Principal)
	}
	return &kmsv1.GetKeyPolicyResponse{Policy: p, PolicyName: "default"}, nil
}

func (s kmsService) ListKeyEvents(ctx context.Context, req *kmsv1.ListKeyEventsRequest) (*kmsv1.ListKeyEventsResponse, error) {
	k, err := s.readKey(ctx, req.KeyId, "kms:ListKeyEvents")
	if err != nil {
		return nil, err
	}
	page, next, err := pageOf(k.History, req.Marker, req.Limit)
	if err != nil {
		return nil, err
	}
	resp := &kmsv1.ListKeyEventsResponse{KeyId: k.ID, NextMarker: next, Truncated: next != ""}
	for _, h := range page {
		resp.Events = append(resp.Events, &kmsv1.KeyEvent{EventType: h.Type, Time: ts(h.Time), Principal: h.Principal,
			RequestId: h.RequestID, KeyState: fsm.StateName(h.State), KeyVersion: h.Version, Hash: append([]byte(nil), h.Hash[:]...)})
	}
	return resp, nil
}

// tagsOf lists a key's tags (the state machine keeps them in key order).
func tagsOf(k *fsm.Key) []*kmsv1.Tag {
	out := make([]*kmsv1.Tag, 0, len(k.Tags))
	for _, t := range k.Tags {
		out = append(out, &kmsv1.Tag{TagKey: t.Key, TagValue: t.Value})
	}
	return out
}

func (s kmsService) ListResourceTags(ctx context.Context, req *kmsv1.ListResourceTagsRequest) (*kmsv1.ListResourceTagsResponse, error) {
	k, err := s.readKey(ctx, req.KeyId, "kms:ListResourceTags")
	if err != nil {
		return nil, err
	}
	page, next, err := pageOf(tagsOf(k), req.Marker, req.Limit)
	if err != nil {
		return nil, err
	}
	return &kmsv1.ListResourceTagsResponse{Tags: page, NextMarker: next, Truncated: next != ""}, nil
}
