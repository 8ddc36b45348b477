package rpc

import (
	"context"

	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/keycrypto"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
)

// macKey is the cached MACKey of an enabled HMAC key.
func (s *Server) macKey(k *fsm.Key) (*keycrypto.MACKey, error) {
	if !keycrypto.IsHMAC(k.KeySpec) {
		return nil, keyUsageErr("key %s is a %s key with usage %s, not GENERATE_VERIFY_MAC", k.ID, k.KeySpec, k.KeyUsage)
	}
	if err := usable(k); err != nil {
		return nil, err
	}
	version, sealed, err := currentMaterial(k)
	if err != nil {
		return nil, err
	}
	mk, err := s.aeads.MAC(k.ID, version, k.KeySpec, func() ([]byte, error) { return s.root.Open(k.ID, version, sealed) })
	if err != nil {
		return nil, internalErr("cannot open the key material of %s", k.ID)
	}
	return mk, nil
}

func (s kmsService) GenerateMac(ctx context.Context, req *kmsv1.GenerateMacRequest) (*kmsv1.GenerateMacResponse, error) {
	if req.MacAlgorithm == "" {
		return nil, validationErr("MacAlgorithm is required")
	}
	k, err := s.readKey(ctx, req.KeyId, "kms:GenerateMac")
	if err != nil {
		return nil, err
	}
	mk, err := s.macKey(k)
	if err != nil {
		return nil, err
	}
	mac, err := mk.MAC(req.MacAlgorithm, req.Message)
	if err != nil {
		return nil, err
	}
	return &kmsv1.GenerateMacResponse{Mac: mac, MacAlgorithm: req.MacAlgorithm, KeyId: s.keyARN(k.ID)}, nil
}

func (s kmsService) VerifyMac(ctx context.Context, req *kmsv1.VerifyMacRequest) (*kmsv1.VerifyMacResponse, error) {
	if req.MacAlgorithm == "" {
		return nil, validationErr("MacAlgorithm is required")
	}
	if len(req.Mac) == 0 {
		return nil, validationErr("Mac is required")
	}
	k, err := s.readKey(ctx, req.KeyId, "kms:VerifyMac")
	if err != nil {
		return nil, err
	}
	mk, err := s.macKey(k)
	if err != nil {
		return nil, err
	}
	if err := mk.Verify(req.MacAlgorithm, req.Message, req.Mac); err != nil {
		return nil, err
	}
	return &kmsv1.VerifyMacResponse{KeyId: s.keyARN(k.ID), MacValid: true, MacAlgorithm: req.MacAlgorithm}, nil
}
