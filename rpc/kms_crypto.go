package rpc

import (
	"context"
	"google.golang.org/grpc/codes"

	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/keycrypto"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
)

const (
	maxPlaintext = 4096 // AWS KMS's limit for Encrypt
	algorithm    = "SYMMETRIC_DEFAULT"
)

// usable checks that a key may be used for crypto.
func usable(k *fsm.Key) error {
	switch k.State {
	case fsm.KeyStateEnabled:
		return nil
	case fsm.KeyStateDisabled:
		return &fsm.Rejection{Code: fsm.CodeDisabled, Msg: "key " + k.ID + " is disabled"}
	case fsm.KeyStateDeleted:
		return notFoundErr("key %s is deleted", k.ID)
	}
	return &fsm.Rejection{Code: fsm.CodeInvalidState, Msg: "key " + k.ID + " is " + fsm.StateName(k.State)}
}

// versionKey returns the cached version key of one key version, opening its
// sealed material under the root key on first use.
func (s *Server) versionKey(k *fsm.Key, version uint32) (*keycrypto.VersionKey, error) {
	v := k.Version(version)
	if v == nil {
		return nil, invalidCiphertextErr("the ciphertext names a key version that does not exist")
	}
	if r := fsm.DecryptableVersion(k, version); r != nil {
		return nil, r // destroyed, or below the minimum decryption version
	}
	if len(v.Sealed) == 0 {
		return nil, &fsm.Rejection{Code: fsm.CodeInvalidState, Msg: "key " + k.ID + " has no material for that version"}
	}
	sealed := v.Sealed
	return s.aeads.Get(k.ID, version, func() ([]byte, error) { return s.root.Open(k.ID, version, sealed) })
}

// encryptWith encrypts under the newest version of an enabled key.
func (s *Server) encryptWith(k *fsm.Key, plaintext []byte, ec map[string]string) ([]byte, error) {
	if err := requireSymmetric(k); err != nil {
		return nil, err
	}
	if err := usable(k); err != nil {
		return nil, err
	}
	version := k.CurrentVersion()
	vk, err := s.versionKey(k, version)
	if err != nil {
		return nil, err
	}
	return vk.Encrypt(s.rand, plaintext, keycrypto.CanonicalContext(ec))
}

// decryptBlob finds the key and version a ciphertext names and opens it.
// expectRef, if set, must name the same key.
func (s *Server) decryptBlob(ctx context.Context, blob []byte, ec map[string]string, expectRef, action string) (*fsm.Key, []byte, error) {
	if len(blob) == 0 {
		return nil, nil, validationErr("CiphertextBlob is required")
	}
	hdr, body, err := keycrypto.ParseCiphertext(blob)
	if err != nil {
		return nil, nil, err
	}
	if err := s.readBarrier(ctx); err != nil {
		return nil, nil, err
	}
	k, err := s.fsm.ResolveKey(hdr.KeyID)
	if err != nil {
		return nil, nil, invalidCiphertextErr("the ciphertext names a key that does not exist")
	}
	if expectRef != "" {
		want, err := s.fsm.ResolveKey(expectRef)
		if err != nil {
			return nil, nil, err
		}
		if want.ID != k.ID {
			return nil, nil, &apiError{code: codes.InvalidArgument, name: "IncorrectKeyException", msg: "the ciphertext was not encrypted under the given KeyId"}
		}
	}
	if err := s.authorize(ctx, k, action); err != nil {
		return nil, nil, err
	}
	if err := requireSymmetric(k); err != nil {
		return nil, nil, err
	}
	if err := usable(k); err != nil {
		return nil, nil, err
	}
	vk, err := s.versionKey(k, hdr.Version)
	if err != nil {
		return nil, nil, err
	}
	pt, err := vk.Decrypt(hdr, body, keycrypto.CanonicalContext(ec))
	if err != nil {
		return nil, nil, err
	}
	return k, pt, nil
}

func (s kmsService) Encrypt(ctx context.Context, req *kmsv1.EncryptRequest) (*kmsv1.EncryptResponse, error) {
	if len(req.Plaintext) == 0 || len(req.Plaintext) > maxPlaintext {
		return nil, validationErr("Plaintext must be 1 to %d bytes", maxPlaintext)
	}
	if err := checkAlgorithm(req.EncryptionAlgorithm); err != nil {
		return nil, err
	}
	if err := checkContext("EncryptionContext", req.EncryptionContext); err != nil {
		return nil, err
	}
	k, err := s.readKey(ctx, req.KeyId, "kms:Encrypt")
	if err != nil {
		return nil, err
	}
	if keycrypto.IsAsymmetric(k.KeySpec) {
		if len(req.EncryptionContext) > 0 {
			return nil, validationErr("EncryptionContext is not supported with asymmetric keys")
		}
		return s.encryptAsymmetric(k, req.EncryptionAlgorithm, req.Plaintext)
	}
	if req.EncryptionAlgorithm != "" && req.EncryptionAlgorithm != algorithm {
		return nil, keyUsageErr("EncryptionAlgorithm %s is not valid for key %s; use SYMMETRIC_DEFAULT", req.EncryptionAlgorithm, k.ID)
	}
	blob, err := s.encryptWith(k, req.Plaintext, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	return &kmsv1.EncryptResponse{CiphertextBlob: blob, KeyId: s.keyARN(k.ID), EncryptionAlgorithm: algorithm}, nil
}

func checkAlgorithm(a string) error {
	if a != "" && a != algorithm && !rsaAlgorithm(a) {
		return validationErr("EncryptionAlgorithm %s is not supported; use SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256", a)
	}
	return nil
}

func (s kmsService) Decrypt(ctx context.Context, req *kmsv1.DecryptRequest) (*kmsv1.DecryptResponse, error) {
	if err := checkAlgorithm(req.EncryptionAlgorithm); err != nil {
		return nil, err
	}
	if err := checkContext("EncryptionContext", req.EncryptionContext); err != nil {
		return nil, err
	}
	if rsaAlgorithm(req.EncryptionAlgorithm) {
		return s.decryptAsymmetric(ctx, req)
	}
	k, pt, err := s.decryptBlob(ctx, req.CiphertextBlob, req.EncryptionContext, req.KeyId, "kms:Decrypt")
	if err != nil {
		return nil, err
	}
	return &kmsv1.DecryptResponse{KeyId: s.keyARN(k.ID), Plaintext: pt, EncryptionAlgorithm: algorithm}, nil
}

func (s kmsService) ReEncrypt(ctx context.Context, req *kmsv1.ReEncryptRequest) (*kmsv1.ReEncryptResponse, error) {
	if req.DestinationKeyId == "" {
		return nil, validationErr("DestinationKeyId is required")
	}
	if rsaAlgorithm(req.SourceEncryptionAlgorithm) || rsaAlgorithm(req.DestinationEncryptionAlgorithm) {
		return nil, unsupportedErr("ReEncrypt with RSA keys is not supported; Decrypt and Encrypt instead")
	}
	if err := checkContext("SourceEncryptionContext", req.SourceEncryptionContext); err != nil {
		return nil, err
	}
	if err := checkContext("DestinationEncryptionContext", req.DestinationEncryptionContext); err != nil {
		return nil, err
	}
	src, pt, err := s.decryptBlob(ctx, req.CiphertextBlob, req.SourceEncryptionContext, req.SourceKeyId, "kms:ReEncryptFrom")
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	dst, err := s.resolve(req.DestinationKeyId, "kms:ReEncryptTo")
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, dst, "kms:ReEncryptTo"); err != nil {
		return nil, err
	}
	blob, err := s.encryptWith(dst, pt, req.DestinationEncryptionContext)
	if err != nil {
		return nil, err
	}
	return &kmsv1.ReEncryptResponse{CiphertextBlob: blob, SourceKeyId: s.keyARN(src.ID), KeyId: s.keyARN(dst.ID),
		SourceEncryptionAlgorithm: algorithm, DestinationEncryptionAlgorithm: algorithm}, nil
}

// dataKey makes a random data key and encrypts it under the key.
func (s *Server) dataKey(ctx context.Context, ref, spec string, n int32, ec map[string]string, action string) (*fsm.Key, []byte, []byte, error) {
	size, err := keycrypto.DataKeyLength(spec, int(n))
	if err != nil {
		return nil, nil, nil, validationErr("%v", err)
	}
	if err := checkContext("EncryptionContext", ec); err != nil {
		return nil, nil, nil, err
	}
	k, err := s.readKey(ctx, ref, action)
	if err != nil {
		return nil, nil, nil, err
	}
	pt, err := keycrypto.RandomBytes(s.rand, size)
	if err != nil {
		return nil, nil, nil, err
	}
	blob, err := s.encryptWith(k, pt, ec)
	if err != nil {
		clear(pt)
		return nil, nil, nil, err
	}
	return k, pt, blob, nil
}

func (s kmsService) GenerateDataKey(ctx context.Context, req *kmsv1.GenerateDataKeyRequest) (*kmsv1.GenerateDataKeyResponse, error) {
	k, pt, blob, err := s.dataKey(ctx, req.KeyId, req.KeySpec, req.NumberOfBytes, req.EncryptionContext, "kms:GenerateDataKey")
	if err != nil {
		return nil, err
	}
	return &kmsv1.GenerateDataKeyResponse{CiphertextBlob: blob, Plaintext: pt, KeyId: s.keyARN(k.ID)}, nil
}

func (s kmsService) GenerateDataKeyWithoutPlaintext(ctx context.Context, req *kmsv1.GenerateDataKeyWithoutPlaintextRequest) (*kmsv1.GenerateDataKeyWithoutPlaintextResponse, error) {
	k, pt, blob, err := s.dataKey(ctx, req.KeyId, req.KeySpec, req.NumberOfBytes, req.EncryptionContext, "kms:GenerateDataKeyWithoutPlaintext")
	if err != nil {
		return nil, err
	}
	clear(pt)
	return &kmsv1.GenerateDataKeyWithoutPlaintextResponse{CiphertextBlob: blob, KeyId: s.keyARN(k.ID)}, nil
}
