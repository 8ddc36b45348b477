package main

import (
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
)

// Commands of asymmetric and HMAC keys, with the aws CLI's names, flags and
// output fields. Binary output (signatures, MACs, keys) is base64.
func init() {
	register("sign", "Signs a message (or its digest) with an asymmetric SIGN_VERIFY key.",
		"key-id! message! message-type grant-tokens signing-algorithm! dry-run", sign)
	register("verify", "Checks a signature made with an asymmetric SIGN_VERIFY key.",
		"key-id! message! message-type signature! signing-algorithm! grant-tokens dry-run", verify)
	register("get-public-key", "Gets the public key of an asymmetric key (DER SubjectPublicKeyInfo).",
		"key-id! grant-tokens", getPublicKey)
	register("generate-mac", "Computes the HMAC of a message with an HMAC key.",
		"message! key-id! mac-algorithm! grant-tokens dry-run", generateMac)
	register("verify-mac", "Checks the HMAC of a message with an HMAC key.",
		"message! key-id! mac-algorithm! mac! grant-tokens dry-run", verifyMac)
	register("generate-data-key-pair", "Makes a data key pair: the public key, the private key, and the private key "+
		"encrypted under a symmetric key.", "encryption-context key-id! key-pair-spec! grant-tokens dry-run", generateDataKeyPair)
	register("generate-data-key-pair-without-plaintext", "Makes a data key pair and returns the public key and the "+
		"encrypted private key only.", "encryption-context key-id! key-pair-spec! grant-tokens dry-run", generateDataKeyPairWithoutPlaintext)
}

type signDoc struct {
	KeyID            string `json:"KeyId"`
	Signature        []byte `json:"Signature"`
	SigningAlgorithm string `json:"SigningAlgorithm"`
}

type verifyDoc struct {
	KeyID            string `json:"KeyId"`
	SignatureValid   bool   `json:"SignatureValid"`
	SigningAlgorithm string `json:"SigningAlgorithm"`
}

type publicKeyDoc struct {
	KeyID                 string   `json:"KeyId"`
	PublicKey             []byte   `json:"PublicKey"`
	CustomerMasterKeySpec string   `json:"CustomerMasterKeySpec"`
	KeySpec               string   `json:"KeySpec"`
	KeyUsage              string   `json:"KeyUsage"`
	EncryptionAlgorithms  []string `json:"EncryptionAlgorithms,omitempty"`
	SigningAlgorithms     []string `json:"SigningAlgorithms,omitempty"`
}

type macDoc struct {
	Mac          []byte `json:"Mac"`
	MacAlgorithm string `json:"MacAlgorithm"`
	KeyID        string `json:"KeyId"`
}

type verifyMacDoc struct {
	KeyID        string `json:"KeyId"`
	MacValid     bool   `json:"MacValid"`
	MacAlgorithm string `json:"MacAlgorithm"`
}

type dataKeyPairDoc struct {
	PrivateKeyCiphertextBlob []byte `json:"PrivateKeyCiphertextBlob"`
	PrivateKeyPlaintext      []byte `json:"PrivateKeyPlaintext,omitempty"`
	PublicKey                []byte `json:"PublicKey"`
	KeyID                    string `json:"KeyId"`
	KeyPairSpec              string `json:"KeyPairSpec"`
}

func sign(e *env, p *params) (any, error) {
	req := &kmsv1.SignRequest{KeyId: p.str("key-id"), MessageType: p.str("message-type"), SigningAlgorithm: p.str("signing-algorithm"), DryRun: p.flag("dry-run")}
	var err error
	if req.Message, err = p.blob("message"); err != nil {
		return nil, err
	}
	if req.GrantTokens, err = grantTokens(p); err != nil {
		return nil, err
	}
	r, err := e.kms().Sign(e.ctx, req)
	if err != nil {
		return nil, err
	}
	return signDoc{KeyID: r.GetKeyId(), Signature: r.GetSignature(), SigningAlgorithm: r.GetSigningAlgorithm()}, nil
}

func verify(e *env, p *params) (any, error) {
	req := &kmsv1.VerifyRequest{KeyId: p.str("key-id"), MessageType: p.str("message-type"), SigningAlgorithm: p.str("signing-algorithm"), DryRun: p.flag("dry-run")}
	var err error
	if req.Message, err = p.blob("message"); err != nil {
		return nil, err
	}
	if req.Signature, err = p.blob("signature"); err != nil {
		return nil, err
	}
	if req.GrantTokens, err = grantTokens(p); err != nil {
		return nil, err
	}
	r, err := e.kms().Verify(e.ctx, req)
	if err != nil {
		return nil, err
	}
	return verifyDoc{KeyID: r.GetKeyId(), SignatureValid: r.GetSignatureValid(), SigningAlgorithm: r.GetSigningAlgorithm()}, nil
}

func getPublicKey(e *env, p *params) (any, error) {
	req := &kmsv1.GetPublicKeyRequest{KeyId: p.str("key-id")}
	var err error
	if req.GrantTokens, err = grantTokens(p); err != nil {
		return nil, err
	}
	r, err := e.kms().GetPublicKey(e.ctx, req)
	if err != nil {
		return nil, err
	}
	return publicKeyDoc{KeyID: r.GetKeyId(), PublicKey: r.GetPublicKey(), CustomerMasterKeySpec: r.GetCustomerMasterKeySpec(),
		KeySpec: r.GetKeySpec(), KeyUsage: r.GetKeyUsage(), EncryptionAlgorithms: r.GetEncryptionAlgorithms(),
		SigningAlgorithms: r.GetSigningAlgorithms()}, nil
}

func generateMac(e *env, p *params) (any, error) {
	req := &kmsv1.GenerateMacRequest{KeyId: p.str("key-id"), MacAlgorithm: p.str("mac-algorithm"), DryRun: p.flag("dry-run")}
	var err error
	if req.Message, err = p.blob("message"); err != nil {
		return nil, err
	}
	if req.GrantTokens, err = grantTokens(p); err != nil {
		return nil, err
	}
	r, err := e.kms().GenerateMac(e.ctx, req)
	if err != nil {
		return nil, err
	}
	return macDoc{Mac: r.GetMac(), MacAlgorithm: r.GetMacAlgorithm(), KeyID: r.GetKeyId()}, nil
}

func verifyMac(e *env, p *params) (any, error) {
	req := &kmsv1.VerifyMacRequest{KeyId: p.str("key-id"), MacAlgorithm: p.str("mac-algorithm"), DryRun: p.flag("dry-run")}
	var err error
	if req.Message, err = p.blob("message"); err != nil {
		return nil, err
	}
	if req.Mac, err = p.blob("mac"); err != nil {
		return nil, err
	}
	if req.GrantTokens, err = grantTokens(p); err != nil {
		return nil, err
	}
	r, err := e.kms().VerifyMac(e.ctx, req)
	if err != nil {
		return nil, err
	}
	return verifyMacDoc{KeyID: r.GetKeyId(), MacValid: r.GetMacValid(), MacAlgorithm: r.GetMacAlgorithm()}, nil
}

func generateDataKeyPair(e *env, p *params) (any, error) {
	req := &kmsv1.GenerateDataKeyPairRequest{KeyId: p.str("key-id"), KeyPairSpec: p.str("key-pair-spec"), DryRun: p.flag("dry-run")}
	var err error
	if req.EncryptionContext, err = p.context("encryption-context"); err != nil {
		return nil, err
	}
	if req.GrantTokens, err = grantTokens(p); err != nil {
		return nil, err
	}
	r, err := e.kms().GenerateDataKeyPair(e.ctx, req)
	if err != nil {
		return nil, err
	}
	return dataKeyPairDoc{PrivateKeyCiphertextBlob: r.GetPrivateKeyCiphertextBlob(), PrivateKeyPlaintext: r.GetPrivateKeyPlaintext(),
		PublicKey: r.GetPublicKey(), KeyID: r.GetKeyId(), KeyPairSpec: r.GetKeyPairSpec()}, nil
}

func generateDataKeyPairWithoutPlaintext(e *env, p *params) (any, error) {
	req := &kmsv1.GenerateDataKeyPairWithoutPlaintextRequest{KeyId: p.str("key-id"), KeyPairSpec: p.str("key-pair-spec"), DryRun: p.flag("dry-run")}
	var err error
	if req.EncryptionContext, err = p.context("encryption-context"); err != nil {
		return nil, err
	}
	if req.GrantTokens, err = grantTokens(p); err != nil {
		return nil, err
	}
	r, err := e.kms().GenerateDataKeyPairWithoutPlaintext(e.ctx, req)
	if err != nil {
		return nil, err
	}
	return dataKeyPairDoc{PrivateKeyCiphertextBlob: r.GetPrivateKeyCiphertextBlob(), PublicKey: r.GetPublicKey(),
		KeyID: r.GetKeyId(), KeyPairSpec: r.GetKeyPairSpec()}, nil
}
