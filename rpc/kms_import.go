package rpc

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/hex"
	"google.golang.org/grpc/codes"
	"time"

	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/keycrypto"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
)

// importTokenValidity is how long import parameters stay valid (AWS: 24 h).
const importTokenValidity = 24 * time.Hour

var wrappingAlgorithms = map[string]bool{
	"RSAES_OAEP_SHA_256":       true,
	"RSAES_OAEP_SHA_1":         true,
	"RSA_AES_KEY_WRAP_SHA_256": true,
	"RSA_AES_KEY_WRAP_SHA_1":   true,
}

// GetParametersForImport makes an RSA wrapping key pair and an import token
// before proposing; the private half is sealed under the root key and
// recorded by an event, so any node can complete the import.
func (s kmsService) GetParametersForImport(ctx context.Context, req *kmsv1.GetParametersForImportRequest) (*kmsv1.GetParametersForImportResponse, error) {
	if !wrappingAlgorithms[req.WrappingAlgorithm] {
		return nil, validationErr("WrappingAlgorithm must be one of RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1, RSA_AES_KEY_WRAP_SHA_256, RSA_AES_KEY_WRAP_SHA_1")
	}
	k, err := s.writeKey(ctx, req.KeyId, "kms:GetParametersForImport")
	if err != nil {
		return nil, err
	}
	if k.Origin != fsm.OriginExternal {
		return nil, unsupportedErr("key %s does not have origin EXTERNAL", k.ID)
	}
	if err := s.importRL.allow(s.principal(ctx), "import parameters"); err != nil {
		return nil, err
	}
	_, pubDER, privDER, err := keycrypto.GenerateWrappingKey(s.rand, req.WrappingKeySpec)
	if err != nil {
		return nil, validationErr("%v", err)
	}
	defer clear(privDER)
	token, err := keycrypto.RandomBytes(s.rand, 32)
	if err != nil {
		return nil, err
	}
	tokenID := hex.EncodeToString(token)
	sealedPriv, err := s.root.SealPrivateKey(k.ID, tokenID, privDER)
	if err != nil {
		return nil, err
	}
	res, err := s.propose(ctx, &eventsv1.Envelope{Event: &eventsv1.Envelope_CreateImportParameters{
		CreateImportParameters: &eventsv1.CreateImportParameters{KeyId: k.ID, ImportTokenId: tokenID,
			WrappingKeySpec: req.WrappingKeySpec, WrappingAlgorithm: req.WrappingAlgorithm, PublicKeyDer: pubDER,
			SealedPrivateKey: sealedPriv, ValidForSeconds: int64(importTokenValidity / time.Second)}}})
	if err != nil {
		return nil, err
	}
	// A retried request returns the parameters the first attempt recorded.
	k, _ = s.fsm.Key(res.KeyID)
	if k == nil || k.Import == nil {
		return nil, internalErr("import parameters applied but not found")
	}
	tok, _ := hex.DecodeString(k.Import.TokenID)
	return &kmsv1.GetParametersForImportResponse{KeyId: s.keyARN(k.ID), ImportToken: tok, PublicKey: k.Import.PublicKeyDER,
		ParametersValidTo: ts(k.Import.ExpiresAt)}, nil
}

// sameToken compares an import token with the one recorded (hex), in
// constant time: how much of a guess matched must not show in the timing.
func sameToken(token []byte, recordedHex string) bool {
	want, err := hex.DecodeString(recordedHex)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(token, want) == 1
}

// ImportKeyMaterial unwraps the material on this node (the leader), re-seals
// it under the root key and proposes it; plaintext material never enters the log.
func (s kmsService) ImportKeyMaterial(ctx context.Context, req *kmsv1.ImportKeyMaterialRequest) (*kmsv1.ImportKeyMaterialResponse, error) {
	k, err := s.writeKey(ctx, req.KeyId, "kms:ImportKeyMaterial")
	if err != nil {
		return nil, err
	}
	if k.Origin != fsm.OriginExternal {
		return nil, unsupportedErr("key %s does not have origin EXTERNAL", k.ID)
	}
	p := k.Import
	tokenID := hex.EncodeToString(req.ImportToken)
	if p == nil || len(req.ImportToken) == 0 || !sameToken(req.ImportToken, p.TokenID) {
		return nil, &fsm.Rejection{Code: fsm.CodeInvalidImportToken, Msg: "the import token is not valid for key " + k.ID}
	}
	if s.now().UnixNano() >= p.ExpiresAt {
		return nil, &fsm.Rejection{Code: fsm.CodeExpiredImportToken, Msg: "the import token for key " + k.ID + " has expired"}
	}
	ev := &eventsv1.ImportKeyMaterial{KeyId: k.ID, ImportTokenId: tokenID}
	switch req.ExpirationModel {
	case "", "KEY_MATERIAL_EXPIRES":
		if req.ValidTo == nil {
			if req.ExpirationModel != "" {
				return nil, validationErr("ValidTo is required with KEY_MATERIAL_EXPIRES")
			}
			ev.ExpirationModel = eventsv1.ExpirationModel_EXPIRATION_MODEL_KEY_MATERIAL_DOES_NOT_EXPIRE
		} else {
			ev.ExpirationModel = eventsv1.ExpirationModel_EXPIRATION_MODEL_KEY_MATERIAL_EXPIRES
			ev.ValidToUnixNano = req.ValidTo.AsTime().UnixNano()
		}
	case "KEY_MATERIAL_DOES_NOT_EXPIRE":
		if req.ValidTo != nil {
			return nil, validationErr("ValidTo is only allowed with KEY_MATERIAL_EXPIRES")
		}
		ev.ExpirationModel = eventsv1.ExpirationModel_EXPIRATION_MODEL_KEY_MATERIAL_DOES_NOT_EXPIRE
	default:
		return nil, validationErr("ExpirationModel must be KEY_MATERIAL_EXPIRES or KEY_MATERIAL_DOES_NOT_EXPIRE")
	}
	privDER, err := s.root.OpenPrivateKey(k.ID, tokenID, p.SealedPrivateKey)
	if err != nil {
		return nil, internalErr("cannot open the wrapping key")
	}
	material, err := keycrypto.UnwrapKeyMaterialFor(privDER, p.WrappingAlgorithm, k.KeySpec, req.EncryptedKeyMaterial)
	clear(privDER)
	if err != nil {
		return nil, &apiError{code: codes.InvalidArgument, name: "InvalidCiphertextException", msg: "the wrapped key material cannot be unwrapped with these import parameters"}
	}
	defer clear(material)
	ev.MaterialFingerprint = s.root.Fingerprint(k.ID, material)

	switch req.ImportType {
	case "", "EXISTING_KEY_MATERIAL":
		ev.ImportType = eventsv1.ImportType_IMPORT_TYPE_EXISTING_KEY_MATERIAL
		ev.Version = 1
		if k.CurrentVersion() > 0 {
			ev.Version = 0
			for _, v := range k.Versions {
				if bytes.Equal(v.Fingerprint, ev.MaterialFingerprint) {
					ev.Version = v.Number
				}
			}
			if ev.Version == 0 {
				return nil, &fsm.Rejection{Code: fsm.CodeIncorrectKeyMaterial, Msg: "the key material does not match key " + k.ID}
			}
		}
	case "NEW_KEY_MATERIAL":
		// Staged (PENDING_ROTATION) until RotateKeyOnDemand, as AWS KMS
		// does; only once every member understands staging (schema 3),
		// since an older build would make the material current at once.
		if s.proposeSchema() < fsm.SchemaStage {
			return nil, unsupportedErr("NEW_KEY_MATERIAL needs every node of the cluster upgraded (event schema %d); finish the upgrade first", fsm.SchemaStage)
		}
		ev.ImportType = eventsv1.ImportType_IMPORT_TYPE_NEW_KEY_MATERIAL
		ev.Version = k.CurrentVersion() + 1
		ev.Stage = true
	default:
		return nil, validationErr("ImportType must be EXISTING_KEY_MATERIAL or NEW_KEY_MATERIAL")
	}
	if ev.SealedMaterial, err = s.root.Seal(k.ID, ev.Version, material); err != nil {
		return nil, err
	}
	_, err = s.propose(ctx, &eventsv1.Envelope{Event: &eventsv1.Envelope_ImportKeyMaterial{ImportKeyMaterial: ev}})
	if err != nil {
		return nil, err
	}
	return &kmsv1.ImportKeyMaterialResponse{KeyId: s.keyARN(k.ID), KeyVersion: ev.Version,
		KeyMaterialId: materialID(ev.MaterialFingerprint)}, nil
}

// materialID is the KeyMaterialId of imported material: the hex of its keyed
// fingerprint (64 hex digits, as AWS KMS's IDs are), the same on every node
// and for the same material imported again.
func materialID(fingerprint []byte) string {
	return hex.EncodeToString(fingerprint)
}

// proposeSchema is the event schema the cluster proposes at (the lowest its
// members announce); a node without one proposes at this build's schema.
func (s *Server) proposeSchema() uint32 {
	if p, ok := s.node.(interface{ ProposeSchema() uint32 }); ok {
		return p.ProposeSchema()
	}
	return fsm.SchemaVersion
}

func (s kmsService) DeleteImportedKeyMaterial(ctx context.Context, req *kmsv1.DeleteImportedKeyMaterialRequest) (*kmsv1.DeleteImportedKeyMaterialResponse, error) {
	_, err := s.keyEvent(ctx, req.KeyId, "kms:DeleteImportedKeyMaterial", func(id string) *eventsv1.Envelope {
		return &eventsv1.Envelope{Event: &eventsv1.Envelope_DeleteImportedKeyMaterial{
			DeleteImportedKeyMaterial: &eventsv1.DeleteImportedKeyMaterial{KeyId: id}}}
	})
	return &kmsv1.DeleteImportedKeyMaterialResponse{}, err
}
