package main

import (
	"os"
	"path/filepath"

	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func init() {
	register("encrypt", "Encrypts up to 4 KiB of plaintext under a key.",
		"key-id! plaintext! encryption-context grant-tokens encryption-algorithm dry-run", encrypt)
	register("decrypt", "Decrypts a ciphertext blob.",
		"ciphertext-blob! encryption-context grant-tokens key-id encryption-algorithm dry-run", decrypt)
	register("re-encrypt", "Decrypts a ciphertext and encrypts it again under another key (or context).",
		"ciphertext-blob! source-encryption-context source-key-id destination-key-id! "+
			"destination-encryption-context source-encryption-algorithm destination-encryption-algorithm grant-tokens dry-run", reEncrypt)
	register("generate-data-key", "Makes a data key: its plaintext and its ciphertext under a key.",
		"key-id! encryption-context number-of-bytes key-spec grant-tokens dry-run", generateDataKey)
	register("generate-data-key-without-plaintext", "Makes a data key and returns only its ciphertext.",
		"key-id! encryption-context number-of-bytes key-spec grant-tokens dry-run", generateDataKeyWithoutPlaintext)
	register("get-parameters-for-import", "Gets a wrapping public key and an import token for key material.",
		"key-id! wrapping-algorithm! wrapping-key-spec! output-dir", getParametersForImport)
	register("import-key-material", "Imports wrapped key material into an EXTERNAL key.",
		"key-id! import-token! encrypted-key-material! valid-to expiration-model import-type", importKeyMaterial)
	register("delete-imported-key-material", "Deletes a key's imported material; the key waits for an import.",
		"key-id!", func(e *env, p *params) (any, error) {
			_, err := e.kms().DeleteImportedKeyMaterial(e.ctx, &kmsv1.DeleteImportedKeyMaterialRequest{KeyId: p.str("key-id")})
			return nil, err
		})
}

func grantTokens(p *params) ([]string, error) {
	if !p.has("grant-tokens") {
		return nil, nil
	}
	return parseStringList("grant-tokens", p.list("grant-tokens"))
}

func encrypt(e *env, p *params) (any, error) {
	req := &kmsv1.EncryptRequest{KeyId: p.str("key-id"), EncryptionAlgorithm: p.str("encryption-algorithm"), DryRun: p.flag("dry-run")}
	var err error
	if req.Plaintext, err = p.blob("plaintext"); err != nil {
		return nil, err
	}
	if req.EncryptionContext, err = p.context("encryption-context"); err != nil {
		return nil, err
	}
	if req.GrantTokens, err = grantTokens(p); err != nil {
		return nil, err
	}
	r, err := e.kms().Encrypt(e.ctx, req)
	if err != nil {
		return nil, err
	}
	return encryptDoc{CiphertextBlob: r.GetCiphertextBlob(), KeyID: r.GetKeyId(), EncryptionAlgorithm: r.GetEncryptionAlgorithm()}, nil
}

func decrypt(e *env, p *params) (any, error) {
	req := &kmsv1.DecryptRequest{KeyId: p.str("key-id"), EncryptionAlgorithm: p.str("encryption-algorithm"), DryRun: p.flag("dry-run")}
	var err error
	if req.CiphertextBlob, err = p.blob("ciphertext-blob"); err != nil {
		return nil, err
	}
	if req.EncryptionContext, err = p.context("encryption-context"); err != nil {
		return nil, err
	}
	if req.GrantTokens, err = grantTokens(p); err != nil {
		return nil, err
	}
	r, err := e.kms().Decrypt(e.ctx, req)
	if err != nil {
		return nil, err
	}
	return decryptDoc{KeyID: r.GetKeyId(), Plaintext: nonNil(r.GetPlaintext()), EncryptionAlgorithm: r.GetEncryptionAlgorithm()}, nil
}

// nonNil keeps an empty blob printing as "" rather than null.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func reEncrypt(e *env, p *params) (any, error) {
	req := &kmsv1.ReEncryptRequest{DryRun: p.flag("dry-run"),
		SourceKeyId:                    p.str("source-key-id"),
		DestinationKeyId:               p.str("destination-key-id"),
		SourceEncryptionAlgorithm:      p.str("source-encryption-algorithm"),
		DestinationEncryptionAlgorithm: p.str("destination-encryption-algorithm"),
	}
	var err error
	if req.CiphertextBlob, err = p.blob("ciphertext-blob"); err != nil {
		return nil, err
	}
	if req.SourceEncryptionContext, err = p.context("source-encryption-context"); err != nil {
		return nil, err
	}
	if req.DestinationEncryptionContext, err = p.context("destination-encryption-context"); err != nil {
		return nil, err
	}
	if req.GrantTokens, err = grantTokens(p); err != nil {
		return nil, err
	}
	r, err := e.kms().ReEncrypt(e.ctx, req)
	if err != nil {
		return nil, err
	}
	return reEncryptDoc{
		CiphertextBlob:                 r.GetCiphertextBlob(),
		SourceKeyID:                    r.GetSourceKeyId(),
		KeyID:                          r.GetKeyId(),
		SourceEncryptionAlgorithm:      r.GetSourceEncryptionAlgorithm(),
		DestinationEncryptionAlgorithm: r.GetDestinationEncryptionAlgorithm(),
	}, nil
}

// dataKeyParams reads the flags both data-key commands share.
func dataKeyParams(p *params) (ec map[string]string, n int32, tokens []string, err error) {
	if ec, err = p.context("encryption-context"); err != nil {
		return
	}
	if n, err = p.int32("number-of-bytes"); err != nil {
		return
	}
	tokens, err = grantTokens(p)
	return
}

func generateDataKey(e *env, p *params) (any, error) {
	ec, n, tokens, err := dataKeyParams(p)
	if err != nil {
		return nil, err
	}
	r, err := e.kms().GenerateDataKey(e.ctx, &kmsv1.GenerateDataKeyRequest{DryRun: p.flag("dry-run"),
		KeyId: p.str("key-id"), EncryptionContext: ec, NumberOfBytes: n, KeySpec: p.str("key-spec"), GrantTokens: tokens,
	})
	if err != nil {
		return nil, err
	}
	return dataKeyDoc{CiphertextBlob: r.GetCiphertextBlob(), Plaintext: r.GetPlaintext(), KeyID: r.GetKeyId()}, nil
}

func generateDataKeyWithoutPlaintext(e *env, p *params) (any, error) {
	ec, n, tokens, err := dataKeyParams(p)
	if err != nil {
		return nil, err
	}
	r, err := e.kms().GenerateDataKeyWithoutPlaintext(e.ctx, &kmsv1.GenerateDataKeyWithoutPlaintextRequest{DryRun: p.flag("dry-run"),
		KeyId: p.str("key-id"), EncryptionContext: ec, NumberOfBytes: n, KeySpec: p.str("key-spec"), GrantTokens: tokens,
	})
	if err != nil {
		return nil, err
	}
	return dataKeyWithoutPlaintextDoc{CiphertextBlob: r.GetCiphertextBlob(), KeyID: r.GetKeyId()}, nil
}

// Files --output-dir writes, named as in the AWS documentation's steps for
// importing key material.
const (
	publicKeyFile   = "WrappingPublicKey.bin"
	importTokenFile = "ImportToken.bin"
)

func getParametersForImport(e *env, p *params) (any, error) {
	dir := p.str("output-dir")
	if p.has("output-dir") && dir == "" {
		return nil, usagef("--output-dir needs a directory")
	}
	r, err := e.kms().GetParametersForImport(e.ctx, &kmsv1.GetParametersForImportRequest{
		KeyId:             p.str("key-id"),
		WrappingAlgorithm: p.str("wrapping-algorithm"),
		WrappingKeySpec:   p.str("wrapping-key-spec"),
	})
	if err != nil {
		return nil, err
	}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, publicKeyFile), r.GetPublicKey(), 0o600); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, importTokenFile), r.GetImportToken(), 0o600); err != nil {
			return nil, err
		}
	}
	return importParametersDoc{
		KeyID:             r.GetKeyId(),
		ImportToken:       r.GetImportToken(),
		PublicKey:         r.GetPublicKey(),
		ParametersValidTo: tsOf(r.GetParametersValidTo()),
	}, nil
}

func importKeyMaterial(e *env, p *params) (any, error) {
	req := &kmsv1.ImportKeyMaterialRequest{
		KeyId:           p.str("key-id"),
		ExpirationModel: p.str("expiration-model"),
		ImportType:      p.str("import-type"),
	}
	var err error
	if req.ImportToken, err = p.blob("import-token"); err != nil {
		return nil, err
	}
	if req.EncryptedKeyMaterial, err = p.blob("encrypted-key-material"); err != nil {
		return nil, err
	}
	if p.has("valid-to") {
		t, err := parseTimestamp("valid-to", p.str("valid-to"))
		if err != nil {
			return nil, err
		}
		req.ValidTo = timestamppb.New(t)
	}
	r, err := e.kms().ImportKeyMaterial(e.ctx, req)
	if err != nil {
		return nil, err
	}
	return importKeyMaterialDoc{KeyID: r.GetKeyId(), KeyMaterialID: r.GetKeyMaterialId(), KeyVersion: r.GetKeyVersion()}, nil
}
