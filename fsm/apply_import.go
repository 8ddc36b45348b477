package fsm

import (
	"bytes"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

func init() {
	register("create_import_parameters", applyCreateImportParameters)
	register("import_key_material", applyImportKeyMaterial)
	register("expire_key_material", applyExpireKeyMaterial)
	register("delete_imported_key_material", applyDeleteImportedKeyMaterial)
}

func requireExternal(k *Key) *Rejection {
	if k.Origin != originExternal {
		return reject(CodeUnsupported, "key %s does not have origin EXTERNAL", k.ID)
	}
	if k.State == stPendingDeletion {
		return invalidState(k)
	}
	return nil
}

// applyCreateImportParameters records a wrapping key pair; it replaces any
// earlier parameters of the key, so only the newest token is valid.
func applyCreateImportParameters(f *FSM, c *applyCtx) *Result {
	e := c.env.GetCreateImportParameters()
	k, r := f.editKey(e.KeyId)
	if r != nil {
		return failed(e.KeyId, r)
	}
	if r := requireExternal(k); r != nil {
		return failed(e.KeyId, r)
	}
	if e.ImportTokenId == "" || len(e.PublicKeyDer) == 0 || len(e.SealedPrivateKey) == 0 ||
		e.ValidForSeconds <= 0 || e.ValidForSeconds > maxPeriodSec {
		return failed(e.KeyId, reject(CodeValidation, "import parameters are incomplete"))
	}
	k.Import = &ImportParams{
		TokenID:           e.ImportTokenId,
		WrappingKeySpec:   e.WrappingKeySpec,
		WrappingAlgorithm: e.WrappingAlgorithm,
		PublicKeyDER:      e.PublicKeyDer,
		SealedPrivateKey:  e.SealedPrivateKey,
		ExpiresAt:         c.t + e.ValidForSeconds*nsPerSec,
	}
	return f.commit(c, k)
}

func applyImportKeyMaterial(f *FSM, c *applyCtx) *Result {
	e := c.env.GetImportKeyMaterial()
	k, r := f.editKey(e.KeyId)
	if r != nil {
		return failed(e.KeyId, r)
	}
	if r := requireExternal(k); r != nil {
		return failed(e.KeyId, r)
	}
	if k.Import == nil || k.Import.TokenID != e.ImportTokenId {
		return failed(e.KeyId, reject(CodeInvalidImportToken, "the import token is not valid for key %s", e.KeyId))
	}
	if c.t >= k.Import.ExpiresAt {
		return failed(e.KeyId, reject(CodeExpiredImportToken, "the import token for key %s has expired", e.KeyId))
	}
	if len(e.SealedMaterial) == 0 || len(e.MaterialFingerprint) == 0 {
		return failed(e.KeyId, reject(CodeValidation, "key material and fingerprint are required"))
	}
	switch e.ExpirationModel {
	case eventsv1.ExpirationModel_EXPIRATION_MODEL_KEY_MATERIAL_EXPIRES:
		if e.ValidToUnixNano <= c.t {
			return failed(e.KeyId, reject(CodeValidation, "ValidTo must be in the future"))
		}
	case eventsv1.ExpirationModel_EXPIRATION_MODEL_KEY_MATERIAL_DOES_NOT_EXPIRE:
		if e.ValidToUnixNano != 0 {
			return failed(e.KeyId, reject(CodeValidation, "ValidTo is only allowed with KEY_MATERIAL_EXPIRES"))
		}
	default:
		return failed(e.KeyId, reject(CodeValidation, "an expiration model is required"))
	}

	n := k.CurrentVersion()
	switch e.ImportType {
	case eventsv1.ImportType_IMPORT_TYPE_EXISTING_KEY_MATERIAL:
		if n == 0 {
			if e.Version != 1 {
				return failed(e.KeyId, reject(CodeConflict, "the first import is version 1"))
			}
			k.Versions = []Version{{Number: 1, Type: eventsv1.RotationType_ROTATION_TYPE_INITIAL, CreatedAt: c.t,
				Sealed: e.SealedMaterial, Fingerprint: e.MaterialFingerprint}}
			break
		}
		v := k.Version(e.Version)
		if v == nil || !bytes.Equal(v.Fingerprint, e.MaterialFingerprint) {
			return failed(e.KeyId, reject(CodeIncorrectKeyMaterial, "the key material does not match key %s", e.KeyId))
		}
		if v.DestroyedAt != 0 {
			// Destroyed is for good (apply_versions.go): the material may
			// not come back by re-import.
			return failed(e.KeyId, reject(CodeInvalidState, "version %d of key %s was destroyed", e.Version, e.KeyId))
		}
		vs := make([]Version, len(k.Versions))
		copy(vs, k.Versions)
		vs[e.Version-1].Sealed = e.SealedMaterial
		k.Versions = vs
	case eventsv1.ImportType_IMPORT_TYPE_NEW_KEY_MATERIAL:
		if !k.IsSymmetric() {
			// New material is a rotation, and only symmetric keys rotate.
			return failed(e.KeyId, rotationRefused(k))
		}
		if !k.HasMaterial() {
			return failed(e.KeyId, reject(CodeInvalidState, "key %s must have its current material imported before new material", e.KeyId))
		}
		if e.Version != n+1 {
			return failed(e.KeyId, reject(CodeConflict, "key %s is at version %d, new material must be version %d", e.KeyId, n, n+1))
		}
		for i := range k.Versions {
			if bytes.Equal(k.Versions[i].Fingerprint, e.MaterialFingerprint) {
				return failed(e.KeyId, reject(CodeIncorrectKeyMaterial, "new key material must differ from the key's earlier material"))
			}
		}
		if e.Stage && c.env.SchemaVersion >= SchemaStage {
			// Staged, as AWS KMS does: it does not encrypt until an
			// ON_DEMAND rotation makes it current; staging again replaces
			// it. The key's current expiry is left as it is.
			k.Staged = &StagedMaterial{Version: n + 1, Sealed: e.SealedMaterial, Fingerprint: e.MaterialFingerprint,
				Expiration: e.ExpirationModel, ValidTo: e.ValidToUnixNano, ImportedAt: c.t}
			return f.commit(c, k)
		}
		// An entry from before staging existed (or below schema 3, where
		// the stage field is not known): the version is added at once, as
		// it was when the entry was first applied.
		k.Versions = append(k.Versions, Version{Number: n + 1, Type: eventsv1.RotationType_ROTATION_TYPE_IMPORTED,
			CreatedAt: c.t, Sealed: e.SealedMaterial, Fingerprint: e.MaterialFingerprint})
	default:
		return failed(e.KeyId, reject(CodeValidation, "an import type is required"))
	}
	k.Expiration = e.ExpirationModel
	k.ValidTo = e.ValidToUnixNano
	if k.State == stPendingImport && k.HasMaterial() {
		k.State = stEnabled
	}
	return f.commit(c, k)
}

// applyExpireKeyMaterial is proposed by the scheduler at ValidTo; the guard
// makes a stale or repeated proposal a rejection.
func applyExpireKeyMaterial(f *FSM, c *applyCtx) *Result {
	e := c.env.GetExpireKeyMaterial()
	k, r := f.editKey(e.KeyId)
	if r != nil {
		return failed(e.KeyId, r)
	}
	if k.Origin != originExternal {
		return failed(e.KeyId, reject(CodeUnsupported, "key %s does not have origin EXTERNAL", k.ID))
	}
	if k.Expiration != eventsv1.ExpirationModel_EXPIRATION_MODEL_KEY_MATERIAL_EXPIRES || k.ValidTo != e.ExpectedValidToUnixNano {
		return failed(e.KeyId, reject(CodeConflict, "key %s material expiry does not match", e.KeyId))
	}
	if c.t < k.ValidTo {
		return failed(e.KeyId, reject(CodeConflict, "key %s material has not expired yet", e.KeyId))
	}
	dropMaterial(k)
	return f.commit(c, k)
}

func applyDeleteImportedKeyMaterial(f *FSM, c *applyCtx) *Result {
	id := c.env.GetDeleteImportedKeyMaterial().KeyId
	k, r := f.editKey(id)
	if r != nil {
		return failed(id, r)
	}
	if k.Origin != originExternal {
		return failed(id, reject(CodeUnsupported, "key %s does not have origin EXTERNAL", k.ID))
	}
	dropMaterial(k)
	return f.commit(c, k)
}

// dropMaterial removes all imported material but keeps fingerprints, so the
// same material can be imported again.
func dropMaterial(k *Key) {
	k.Versions = wipeMaterial(k.Versions)
	k.Staged = nil
	k.Expiration = eventsv1.ExpirationModel_EXPIRATION_MODEL_UNSPECIFIED
	k.ValidTo = 0
	if k.State == stEnabled || k.State == stDisabled {
		k.State = stPendingImport
	}
}
