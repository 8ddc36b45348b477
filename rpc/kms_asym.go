package rpc

import (
	"context"
	"strings"

	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/keycrypto"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/grpc/codes"
)

// Asymmetric (RSA, ECC) and HMAC keys. Their material is a PKCS#8 private
// key or HMAC key bytes, sealed under the root key like symmetric material;
// every node serves Sign, Verify, GetPublicKey, GenerateMac, VerifyMac and
// RSA Encrypt/Decrypt from its applied state after the read barrier
// (readKey), with the parsed key cached per key version.

// keyUsageErr is a key used for what its KeyUsage or KeySpec does not allow.
func keyUsageErr(format string, args ...any) error {
	e := validationErr(format, args...).(*apiError)
	e.name = "InvalidKeyUsageException"
	return e
}

// keySpecOf checks and defaults the KeySpec (or its old name,
// CustomerMasterKeySpec) and KeyUsage of CreateKey.
func keySpecOf(req *kmsv1.CreateKeyRequest) (spec, usage string, err error) {
	specIn := req.KeySpec
	if specIn == "" {
		specIn = req.CustomerMasterKeySpec
	} else if req.CustomerMasterKeySpec != "" && req.CustomerMasterKeySpec != req.KeySpec {
		return "", "", validationErr("KeySpec and CustomerMasterKeySpec differ; give KeySpec")
	}
	spec, usage, err = keycrypto.CheckKeySpec(specIn, req.KeyUsage)
	if err != nil {
		return "", "", validationErr("%v", err)
	}
	return spec, usage, nil
}

// checkSpecOrigin records a non-symmetric spec and usage in the event
// (symmetric keys leave them empty, as before there were other specs) and
// refuses what AWS KMS refuses: managed keys are symmetric, and of the other
// specs only HMAC keys may have imported material.
func checkSpecOrigin(spec string, ev *eventsv1.CreateKey, usage string) error {
	if keycrypto.IsSymmetric(spec) {
		return nil
	}
	switch {
	case ev.Origin == fsm.OriginService:
		return unsupportedErr("managed keys are SYMMETRIC_DEFAULT keys")
	case ev.Origin == fsm.OriginExternal && !keycrypto.IsHMAC(spec):
		return unsupportedErr("keys with key spec %s cannot have origin EXTERNAL", spec)
	}
	ev.KeySpec, ev.KeyUsage = spec, usage
	return nil
}

// newSealedMaterialFor makes version 1 material of a key spec — here,
// before proposing, never in Apply — and seals it under the root key at
// once, so the log carries only sealed bytes.
func (s *Server) newSealedMaterialFor(keyID, spec string) ([]byte, error) {
	if keycrypto.IsSymmetric(spec) {
		return s.newSealedMaterial(keyID, 1)
	}
	m, err := keycrypto.GenerateKeyMaterial(s.rand, spec)
	if err != nil {
		return nil, internalErr("cannot make key material: %v", err)
	}
	defer clear(m)
	return s.root.Seal(keyID, 1, m)
}

// algorithmLists fills the algorithm fields of a key's metadata.
func algorithmLists(md *kmsv1.KeyMetadata, k *fsm.Key) {
	md.EncryptionAlgorithms = keycrypto.EncryptionAlgorithms(k.KeySpec, k.KeyUsage)
	md.SigningAlgorithms = keycrypto.SigningAlgorithms(k.KeySpec, k.KeyUsage)
	md.MacAlgorithms = keycrypto.MACAlgorithms(k.KeySpec)
}

// requireSymmetric refuses a non-symmetric key for the symmetric
// operations (Encrypt without an RSA algorithm, data keys, ReEncrypt).
func requireSymmetric(k *fsm.Key) error {
	if !keycrypto.IsSymmetric(k.KeySpec) {
		return keyUsageErr("key %s has key spec %s; this operation needs a SYMMETRIC_DEFAULT key", k.ID, k.KeySpec)
	}
	return nil
}

// asymmetricKey is the cached parsed private key of an enabled RSA or ECC
// key with the given usage.
func (s *Server) asymmetricKey(k *fsm.Key, usage string) (*keycrypto.AsymmetricKey, error) {
	if !keycrypto.IsAsymmetric(k.KeySpec) || (usage != "" && k.KeyUsage != usage) {
		return nil, keyUsageErr("key %s is a %s key with usage %s, not %s", k.ID, k.KeySpec, k.KeyUsage, usage)
	}
	if err := usable(k); err != nil {
		return nil, err
	}
	version, sealed, err := currentMaterial(k)
	if err != nil {
		return nil, err
	}
	ak, err := s.aeads.Asymmetric(k.ID, version, k.KeySpec, func() ([]byte, error) { return s.root.Open(k.ID, version, sealed) })
	if err != nil {
		return nil, internalErr("cannot open the key material of %s", k.ID)
	}
	return ak, nil
}

func (s kmsService) Sign(ctx context.Context, req *kmsv1.SignRequest) (*kmsv1.SignResponse, error) {
	if req.SigningAlgorithm == "" {
		return nil, validationErr("SigningAlgorithm is required")
	}
	k, err := s.readKey(ctx, req.KeyId, "kms:Sign")
	if err != nil {
		return nil, err
	}
	ak, err := s.asymmetricKey(k, keycrypto.UsageSignVerify)
	if err != nil {
		return nil, err
	}
	sig, err := ak.Sign(s.rand, req.SigningAlgorithm, req.MessageType, req.Message)
	if err != nil {
		return nil, err
	}
	return &kmsv1.SignResponse{KeyId: s.keyARN(k.ID), Signature: sig, SigningAlgorithm: req.SigningAlgorithm}, nil
}

func (s kmsService) Verify(ctx context.Context, req *kmsv1.VerifyRequest) (*kmsv1.VerifyResponse, error) {
	if req.SigningAlgorithm == "" {
		return nil, validationErr("SigningAlgorithm is required")
	}
	if len(req.Signature) == 0 {
		return nil, validationErr("Signature is required")
	}
	k, err := s.readKey(ctx, req.KeyId, "kms:Verify")
	if err != nil {
		return nil, err
	}
	ak, err := s.asymmetricKey(k, keycrypto.UsageSignVerify)
	if err != nil {
		return nil, err
	}
	if err := ak.Verify(req.SigningAlgorithm, req.MessageType, req.Message, req.Signature); err != nil {
		return nil, err
	}
	return &kmsv1.VerifyResponse{KeyId: s.keyARN(k.ID), SignatureValid: true, SigningAlgorithm: req.SigningAlgorithm}, nil
}

func (s kmsService) GetPublicKey(ctx context.Context, req *kmsv1.GetPublicKeyRequest) (*kmsv1.GetPublicKeyResponse, error) {
	k, err := s.readKey(ctx, req.KeyId, "kms:GetPublicKey")
	if err != nil {
		return nil, err
	}
	if !keycrypto.IsAsymmetric(k.KeySpec) {
		return nil, unsupportedErr("key %s has key spec %s; only asymmetric keys have a public key", k.ID, k.KeySpec)
	}
	ak, err := s.asymmetricKey(k, "")
	if err != nil {
		return nil, err
	}
	return &kmsv1.GetPublicKeyResponse{
		KeyId:                 s.keyARN(k.ID),
		PublicKey:             append([]byte(nil), ak.PublicKeyDER()...),
		CustomerMasterKeySpec: k.KeySpec,
		KeySpec:               k.KeySpec,
		KeyUsage:              k.KeyUsage,
		EncryptionAlgorithms:  keycrypto.EncryptionAlgorithms(k.KeySpec, k.KeyUsage),
		SigningAlgorithms:     keycrypto.SigningAlgorithms(k.KeySpec, k.KeyUsage),
	}, nil
}

// encryptAsymmetric is Encrypt with an RSA ENCRYPT_DECRYPT key: raw
// RSAES-OAEP, as AWS KMS, so anyone holding the private key could decrypt
// it, and ciphertexts made with the public key elsewhere decrypt here.
func (s *Server) encryptAsymmetric(k *fsm.Key, alg string, plaintext []byte) (*kmsv1.EncryptResponse, error) {
	if alg == "" || alg == algorithm {
		return nil, keyUsageErr("key %s is an RSA key; give EncryptionAlgorithm RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256", k.ID)
	}
	ak, err := s.asymmetricKey(k, keycrypto.UsageEncryptDecrypt)
	if err != nil {
		return nil, err
	}
	ct, err := ak.Encrypt(s.rand, alg, plaintext)
	if err != nil {
		return nil, err
	}
	return &kmsv1.EncryptResponse{CiphertextBlob: ct, KeyId: s.keyARN(k.ID), EncryptionAlgorithm: alg}, nil
}

// rsaAlgorithm reports whether an EncryptionAlgorithm is one of RSA's.
func rsaAlgorithm(a string) bool {
	return a == keycrypto.AlgRSAOAEPSHA1 || a == keycrypto.AlgRSAOAEPSHA256
}

// decryptAsymmetric is Decrypt of a raw RSA-OAEP ciphertext; as in AWS KMS
// it needs the KeyId, since such a ciphertext names no key.
func (s *Server) decryptAsymmetric(ctx context.Context, req *kmsv1.DecryptRequest) (*kmsv1.DecryptResponse, error) {
	if req.KeyId == "" {
		return nil, validationErr("KeyId is required to decrypt with %s", req.EncryptionAlgorithm)
	}
	if len(req.CiphertextBlob) == 0 {
		return nil, validationErr("CiphertextBlob is required")
	}
	if len(req.EncryptionContext) > 0 {
		return nil, validationErr("EncryptionContext is not supported with asymmetric keys")
	}
	k, err := s.readKey(ctx, req.KeyId, "kms:Decrypt")
	if err != nil {
		return nil, err
	}
	ak, err := s.asymmetricKey(k, keycrypto.UsageEncryptDecrypt)
	if err != nil {
		return nil, err
	}
	pt, err := ak.Decrypt(req.EncryptionAlgorithm, req.CiphertextBlob)
	if err != nil {
		return nil, err
	}
	return &kmsv1.DecryptResponse{KeyId: s.keyARN(k.ID), Plaintext: pt, EncryptionAlgorithm: req.EncryptionAlgorithm}, nil
}

// RSAKeyPairsPerMinute bounds how many RSA data key pairs one identity may
// ask one node for per minute: each is an RSA key generation (RSA_4096
// takes the better part of a second of CPU), done by whichever node takes
// the call. ECC pairs are cheap and not limited.
const RSAKeyPairsPerMinute = 120

// dataKeyPair makes a key pair and encrypts its PKCS#8 private half under a
// symmetric key, in the normal ciphertext format (Decrypt returns it).
func (s *Server) dataKeyPair(ctx context.Context, ref, spec string, ec map[string]string, action string) (*fsm.Key, []byte, []byte, []byte, error) {
	if spec == "" {
		return nil, nil, nil, nil, validationErr("KeyPairSpec is required")
	}
	if err := checkContext("EncryptionContext", ec); err != nil {
		return nil, nil, nil, nil, err
	}
	k, err := s.readKey(ctx, ref, action)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if err := requireSymmetric(k); err != nil {
		return nil, nil, nil, nil, err
	}
	if err := usable(k); err != nil {
		return nil, nil, nil, nil, err
	}
	if strings.HasPrefix(spec, "RSA_") {
		if err := s.rsaPairs.allow(s.principal(ctx), "RSA data key pairs"); err != nil {
			return nil, nil, nil, nil, err
		}
	}
	priv, pub, err := keycrypto.GenerateKeyPair(s.rand, spec)
	if err != nil {
		return nil, nil, nil, nil, validationErr("%v", err)
	}
	blob, err := s.encryptWith(k, priv, ec)
	if err != nil {
		clear(priv)
		return nil, nil, nil, nil, err
	}
	return k, priv, pub, blob, nil
}

func (s kmsService) GenerateDataKeyPair(ctx context.Context, req *kmsv1.GenerateDataKeyPairRequest) (*kmsv1.GenerateDataKeyPairResponse, error) {
	k, priv, pub, blob, err := s.dataKeyPair(ctx, req.KeyId, req.KeyPairSpec, req.EncryptionContext, "kms:GenerateDataKeyPair")
	if err != nil {
		return nil, err
	}
	return &kmsv1.GenerateDataKeyPairResponse{PrivateKeyCiphertextBlob: blob, PrivateKeyPlaintext: priv, PublicKey: pub,
		KeyId: s.keyARN(k.ID), KeyPairSpec: req.KeyPairSpec}, nil
}

func (s kmsService) GenerateDataKeyPairWithoutPlaintext(ctx context.Context, req *kmsv1.GenerateDataKeyPairWithoutPlaintextRequest) (*kmsv1.GenerateDataKeyPairWithoutPlaintextResponse, error) {
	k, priv, pub, blob, err := s.dataKeyPair(ctx, req.KeyId, req.KeyPairSpec, req.EncryptionContext, "kms:GenerateDataKeyPairWithoutPlaintext")
	if err != nil {
		return nil, err
	}
	clear(priv)
	return &kmsv1.GenerateDataKeyPairWithoutPlaintextResponse{PrivateKeyCiphertextBlob: blob, PublicKey: pub,
		KeyId: s.keyARN(k.ID), KeyPairSpec: req.KeyPairSpec}, nil
}

// asymmetricErrors maps keycrypto's errors of the asymmetric and HMAC
// operations; toStatus consults it.
var asymmetricErrors = []struct {
	err  error
	code codes.Code
	name string
}{
	{keycrypto.ErrInvalidSignature, codes.InvalidArgument, "KMSInvalidSignatureException"},
	{keycrypto.ErrInvalidMAC, codes.InvalidArgument, "KMSInvalidMacException"},
	{keycrypto.ErrAlgorithm, codes.InvalidArgument, "InvalidKeyUsageException"},
	{keycrypto.ErrMessage, codes.InvalidArgument, "ValidationException"},
}

// currentMaterial is the current version of an asymmetric or HMAC key and
// its sealed material, or the rejection when it has none.
func currentMaterial(k *fsm.Key) (uint32, []byte, error) {
	version := k.CurrentVersion()
	v := k.Version(version)
	if v == nil || len(v.Sealed) == 0 {
		return 0, nil, &fsm.Rejection{Code: fsm.CodeInvalidState, Msg: "key " + k.ID + " has no key material"}
	}
	return version, v.Sealed, nil
}
