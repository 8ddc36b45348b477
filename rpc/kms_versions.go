package rpc

import (
	"context"

	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
)

// Version controls, a raftkms extension (as Vault transit and GCP KMS
// offer): to finish a rotation, re-encrypt everything to the newest version
// (ReEncrypt), raise the minimum decryption version, then destroy the old
// versions. Both are events, so every node refuses the same ciphertexts.

// hasDestroyedVersion reports whether some version of k was destroyed, so
// the node drops its cached AEADs of k (the destroyed one must not stay in
// memory).
func hasDestroyedVersion(k *fsm.Key) bool {
	for i := range k.Versions {
		if k.Versions[i].DestroyedAt != 0 {
			return true
		}
	}
	return false
}

func (s kmsService) UpdateKeyVersionPolicy(ctx context.Context, req *kmsv1.UpdateKeyVersionPolicyRequest) (*kmsv1.UpdateKeyVersionPolicyResponse, error) {
	if req.MinDecryptionVersion == 0 {
		return nil, validationErr("MinDecryptionVersion must be 1 or more")
	}
	res, err := s.keyEvent(ctx, req.KeyId, "kms:UpdateKeyVersionPolicy", func(id string) *eventsv1.Envelope {
		return &eventsv1.Envelope{Event: &eventsv1.Envelope_UpdateKeyVersionPolicy{UpdateKeyVersionPolicy: &eventsv1.UpdateKeyVersionPolicy{
			KeyId: id, MinDecryptionVersion: req.MinDecryptionVersion}}}
	})
	if err != nil {
		return nil, err
	}
	return &kmsv1.UpdateKeyVersionPolicyResponse{KeyId: s.keyARN(res.KeyID), MinDecryptionVersion: req.MinDecryptionVersion}, nil
}

func (s kmsService) DestroyKeyVersion(ctx context.Context, req *kmsv1.DestroyKeyVersionRequest) (*kmsv1.DestroyKeyVersionResponse, error) {
	if req.KeyVersion == 0 {
		return nil, validationErr("KeyVersion is required")
	}
	res, err := s.keyEvent(ctx, req.KeyId, "kms:DestroyKeyVersion", func(id string) *eventsv1.Envelope {
		return &eventsv1.Envelope{Event: &eventsv1.Envelope_DestroyKeyVersion{DestroyKeyVersion: &eventsv1.DestroyKeyVersion{
			KeyId: id, Version: req.KeyVersion}}}
	})
	if err != nil {
		return nil, err
	}
	return &kmsv1.DestroyKeyVersionResponse{KeyId: s.keyARN(res.KeyID), KeyVersion: req.KeyVersion}, nil
}
