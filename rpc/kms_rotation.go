package rpc

import (
	"context"
	"errors"
	"strconv"

	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
)

// pageOf cuts one page out of a list that a marker (an offset) indexes:
// the page, and the marker of the next page ("" after the last).
func pageOf[T any](items []T, marker string, limit int32) ([]T, string, error) {
	n, err := pageLimit(limit)
	if err != nil {
		return nil, "", err
	}
	start := 0
	if marker != "" {
		start, err = strconv.Atoi(marker)
		if err != nil || start < 0 || start > len(items) {
			return nil, "", validationErr("Marker is not valid")
		}
	}
	end := min(start+n, len(items))
	next := ""
	if end < len(items) {
		next = strconv.Itoa(end)
	}
	return items[start:end], next, nil
}

func (s kmsService) EnableKeyRotation(ctx context.Context, req *kmsv1.EnableKeyRotationRequest) (*kmsv1.EnableKeyRotationResponse, error) {
	l := s.limits
	period, err := periodSeconds(req.RotationPeriodInDays, req.RotationPeriodSeconds, DefaultRotationPeriod,
		l.MinRotationPeriod, l.MaxRotationPeriod, "RotationPeriodInDays")
	if err != nil {
		return nil, err
	}
	_, err = s.keyEvent(ctx, req.KeyId, "kms:EnableKeyRotation", func(id string) *eventsv1.Envelope {
		return &eventsv1.Envelope{Event: &eventsv1.Envelope_EnableKeyRotation{EnableKeyRotation: &eventsv1.EnableKeyRotation{
			KeyId: id, RotationPeriodSeconds: period, MaxDecryptionVersions: req.MaxDecryptionVersions}}}
	})
	return &kmsv1.EnableKeyRotationResponse{}, err
}

func (s kmsService) DisableKeyRotation(ctx context.Context, req *kmsv1.DisableKeyRotationRequest) (*kmsv1.DisableKeyRotationResponse, error) {
	_, err := s.keyEvent(ctx, req.KeyId, "kms:DisableKeyRotation", func(id string) *eventsv1.Envelope {
		return &eventsv1.Envelope{Event: &eventsv1.Envelope_DisableKeyRotation{DisableKeyRotation: &eventsv1.DisableKeyRotation{KeyId: id}}}
	})
	return &kmsv1.DisableKeyRotationResponse{}, err
}

func (s kmsService) GetKeyRotationStatus(ctx context.Context, req *kmsv1.GetKeyRotationStatusRequest) (*kmsv1.GetKeyRotationStatusResponse, error) {
	k, err := s.readKey(ctx, req.KeyId, "kms:GetKeyRotationStatus")
	if err != nil {
		return nil, err
	}
	resp := &kmsv1.GetKeyRotationStatusResponse{
		KeyId:              k.ID,
		KeyRotationEnabled: k.Rotation.Enabled,
	}
	if k.Rotation.Enabled {
		resp.RotationPeriodInDays = int32(k.Rotation.PeriodSec / 86400)
		resp.RotationPeriodSeconds = k.Rotation.PeriodSec
		resp.NextRotationDate = ts(k.Rotation.NextRotation)
		resp.MaxDecryptionVersions = k.Rotation.MaxDecryptionVersions
	}
	// The newest on-demand rotation, as AWS reports it.
	for i := len(k.Versions) - 1; i >= 0; i-- {
		if k.Versions[i].Type == eventsv1.RotationType_ROTATION_TYPE_ON_DEMAND {
			resp.OnDemandRotationStartDate = ts(k.Versions[i].CreatedAt)
			break
		}
	}
	return resp, nil
}

// RotateKeyOnDemand seals new material for the next version and proposes it
// with the version it expects to replace; if a concurrent rotation got there
// first, it tries again on the new version.
func (s kmsService) RotateKeyOnDemand(ctx context.Context, req *kmsv1.RotateKeyOnDemandRequest) (*kmsv1.RotateKeyOnDemandResponse, error) {
	reqID := requestID(ctx)
	for attempt := 0; ; attempt++ {
		k, err := s.writeKey(ctx, req.KeyId, "kms:RotateKeyOnDemand")
		if err != nil {
			return nil, err
		}
		cur := k.CurrentVersion()
		rot := &eventsv1.RotateKey{KeyId: k.ID, RotationType: eventsv1.RotationType_ROTATION_TYPE_ON_DEMAND,
			ExpectedCurrentVersion: cur, OnDemandLimit: s.limits.OnDemandLimit}
		if k.Origin == fsm.OriginExternal && k.IsSymmetric() {
			// Imported keys rotate to the material staged by
			// ImportKeyMaterial (NEW_KEY_MATERIAL), named by its fingerprint.
			if r := fsm.NoStagedMaterial(k); r != nil {
				return nil, r
			}
			rot.StagedMaterialFingerprint = k.Staged.Fingerprint
		} else if rot.SealedMaterial, err = s.newSealedMaterial(k.ID, cur+1); err != nil {
			return nil, err
		}
		actx := ctx
		if attempt > 0 {
			// Each attempt is a distinct proposal: the first attempt's
			// conflict is remembered under the original request ID.
			actx = withRequestID(ctx, reqID+"/"+strconv.Itoa(attempt))
		}
		res, err := s.propose(actx, &eventsv1.Envelope{Event: &eventsv1.Envelope_RotateKey{RotateKey: rot}})
		if errors.Is(err, fsm.ErrConflict) && attempt < 5 {
			continue
		}
		if err != nil {
			return nil, err
		}
		return &kmsv1.RotateKeyOnDemandResponse{KeyId: k.ID, KeyVersion: res.Version}, nil
	}
}

func rotationTypeName(t fsm.RotationType) string {
	switch t {
	case eventsv1.RotationType_ROTATION_TYPE_AUTOMATIC:
		return "AUTOMATIC"
	case eventsv1.RotationType_ROTATION_TYPE_ON_DEMAND:
		return "ON_DEMAND"
	case eventsv1.RotationType_ROTATION_TYPE_IMPORTED:
		return "IMPORTED"
	}
	return "INITIAL"
}

// Key material states, as AWS KMS names them in ListKeyRotations.
const (
	materialCurrent         = "CURRENT"
	materialNonCurrent      = "NON_CURRENT"
	materialPendingRotation = "PENDING_ROTATION"
)

// ListKeyRotations lists every version after the first, oldest first, as
// AWS lists rotations; each entry also carries its version number and its
// material's state. With IncludeKeyMaterial ALL_KEY_MATERIAL it also lists
// the first version and imported material pending rotation (last).
func (s kmsService) ListKeyRotations(ctx context.Context, req *kmsv1.ListKeyRotationsRequest) (*kmsv1.ListKeyRotationsResponse, error) {
	all := false
	switch req.IncludeKeyMaterial {
	case "", "ROTATIONS_ONLY":
	case "ALL_KEY_MATERIAL":
		all = true
	default:
		return nil, validationErr("IncludeKeyMaterial must be ALL_KEY_MATERIAL or ROTATIONS_ONLY")
	}
	k, err := s.readKey(ctx, req.KeyId, "kms:ListKeyRotations")
	if err != nil {
		return nil, err
	}
	external := k.Origin == fsm.OriginExternal
	var entries []*kmsv1.RotationsListEntry
	for i, v := range k.Versions {
		if v.Type == eventsv1.RotationType_ROTATION_TYPE_INITIAL && !all {
			continue
		}
		e := &kmsv1.RotationsListEntry{KeyId: k.ID, RotationDate: ts(v.CreatedAt),
			RotationType: rotationTypeName(v.Type), KeyVersion: v.Number, KeyMaterialState: materialNonCurrent}
		if i == len(k.Versions)-1 {
			e.KeyMaterialState = materialCurrent
		}
		if external {
			e.KeyMaterialId = materialID(v.Fingerprint)
		}
		if v.Type == eventsv1.RotationType_ROTATION_TYPE_INITIAL {
			e.RotationType, e.RotationDate = "", nil // the first material is no rotation
		}
		entries = append(entries, e)
	}
	if st := k.Staged; st != nil && all {
		entries = append(entries, &kmsv1.RotationsListEntry{KeyId: k.ID, KeyMaterialId: materialID(st.Fingerprint),
			KeyMaterialState: materialPendingRotation})
	}
	page, next, err := pageOf(entries, req.Marker, req.Limit)
	if err != nil {
		return nil, err
	}
	return &kmsv1.ListKeyRotationsResponse{Rotations: page, NextMarker: next, Truncated: next != ""}, nil
}
