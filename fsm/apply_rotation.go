package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

func init() {
	register("enable_key_rotation", applyEnableKeyRotation)
	register("disable_key_rotation", applyDisableKeyRotation)
	register("rotate_key", applyRotateKey)
	register("rotate_keys", applyRotateKeys)
}

// MaxRotateBatch is the most rotations one RotateKeys entry may carry, and
// MaxRotateBatchBytes the most bytes its entry may have: well below the log's
// entry limit, so that one entry stays cheap to replicate and quick to apply
// (reads wait for the entries before them to apply). An entry beyond either
// is refused as a whole, before any item applies.
const (
	MaxRotateBatch      = 1024
	MaxRotateBatchBytes = 256 << 10
)

// batchItemDomain separates the history hash of a batch item from that of an
// entry of its own.
const batchItemDomain = "raftkms RotateKeys item\x00"

// applyRotateKeys applies each rotation of the batch in order, exactly as a
// RotateKey entry of its own would at this entry's time: its own guard, its
// own rejection, its own history entry (of type RotateKey). One item's
// rejection never affects another's. The history entry of item i hashes the
// entry's SHA-256 and i in place of the entry's bytes, so every item's chain
// is bound to the whole entry without hashing it once per item.
func applyRotateKeys(f *FSM, c *applyCtx) *Result {
	items := c.env.GetRotateKeys().GetRotations()
	switch {
	case len(items) == 0:
		return failed("", reject(CodeValidation, "a RotateKeys entry needs at least one rotation"))
	case len(items) > MaxRotateBatch:
		return failed("", reject(CodeValidation, "a RotateKeys entry of %d rotations has more than %d", len(items), MaxRotateBatch))
	case len(c.data) > MaxRotateBatchBytes:
		return failed("", reject(CodeValidation, "a RotateKeys entry of %d bytes is larger than %d", len(c.data), MaxRotateBatchBytes))
	}
	sum := sha256.Sum256(c.data)
	buf := make([]byte, 0, len(batchItemDomain)+len(sum)+4)
	buf = append(append(buf, batchItemDomain...), sum[:]...)
	buf = append(buf, 0, 0, 0, 0)
	name := c.name
	c.name = "RotateKey" // as the history of a key rotated on its own
	c.keysOnly = true
	c.changed = make([]string, 0, len(items))
	c.touched = make([]string, 0, len(items))
	res := &Result{Items: make([]ItemResult, len(items))}
	for i, e := range items {
		binary.BigEndian.PutUint32(buf[len(buf)-4:], uint32(i))
		c.item = buf
		r := rotateKey(f, c, e)
		res.Items[i] = ItemResult{KeyID: e.GetKeyId(), Version: r.Version, Err: r.Err}
	}
	c.name, c.item = name, nil
	return res
}

// rotationRefused says why a user may not change a key's rotation: imported
// keys rotate only by importing new material, managed keys only by the cluster.
func rotationRefused(k *Key) *Rejection {
	if !k.IsSymmetric() {
		// As AWS KMS: asymmetric and HMAC keys rotate neither automatically
		// nor on demand.
		return reject(CodeUnsupported, "key %s has key spec %s; only SYMMETRIC_DEFAULT keys can be rotated", k.ID, k.KeySpec)
	}
	switch k.Origin {
	case originExternal:
		return reject(CodeUnsupported, "key %s has imported material and cannot be rotated automatically or on demand", k.ID)
	case originService:
		return reject(CodeUnsupported, "key %s is a managed key; its rotation is controlled by the cluster", k.ID)
	}
	return nil
}

// usableForRotation checks the key's state for a rotation change.
func usableForRotation(k *Key) *Rejection {
	switch k.State {
	case stEnabled:
		return nil
	case stDisabled:
		return reject(CodeDisabled, "key %s is disabled", k.ID)
	}
	return invalidState(k)
}

func applyEnableKeyRotation(f *FSM, c *applyCtx) *Result {
	e := c.env.GetEnableKeyRotation()
	k, r := f.editKey(e.KeyId)
	if r != nil {
		return failed(e.KeyId, r)
	}
	if r := rotationRefused(k); r != nil {
		return failed(e.KeyId, r)
	}
	if r := usableForRotation(k); r != nil {
		return failed(e.KeyId, r)
	}
	if e.RotationPeriodSeconds <= 0 || e.RotationPeriodSeconds > maxPeriodSec {
		return failed(e.KeyId, reject(CodeValidation, "rotation period of %d seconds is out of range", e.RotationPeriodSeconds))
	}
	if !k.Rotation.Enabled {
		// The schedule starts when rotation is switched on.
		k.Rotation.LastRotation = c.t
	}
	k.Rotation.Enabled = true
	k.Rotation.PeriodSec = e.RotationPeriodSeconds
	k.Rotation.MaxDecryptionVersions = e.MaxDecryptionVersions
	k.Rotation.NextRotation = k.Rotation.LastRotation + e.RotationPeriodSeconds*nsPerSec
	return f.commit(c, k)
}

func applyDisableKeyRotation(f *FSM, c *applyCtx) *Result {
	id := c.env.GetDisableKeyRotation().KeyId
	k, r := f.editKey(id)
	if r != nil {
		return failed(id, r)
	}
	if r := rotationRefused(k); r != nil {
		return failed(id, r)
	}
	if r := usableForRotation(k); r != nil {
		return failed(id, r)
	}
	k.Rotation.Enabled = false
	k.Rotation.NextRotation = 0
	return f.commit(c, k)
}

// applyRotateKey adds a version. The expected-version guard makes a rotation
// proposed twice apply once; an automatic rotation is also refused before it
// is due or when rotation was switched off meanwhile.
func applyRotateKey(f *FSM, c *applyCtx) *Result {
	return rotateKey(f, c, c.env.GetRotateKey())
}

// rotateKey applies one rotation, of a RotateKey entry or of a RotateKeys
// item.
func rotateKey(f *FSM, c *applyCtx, e *eventsv1.RotateKey) *Result {
	k, r := f.editKey(e.KeyId)
	if r != nil {
		return failed(e.KeyId, r)
	}
	if len(e.StagedMaterialFingerprint) > 0 {
		return applyRotateStaged(f, c, k, e)
	}
	if len(e.SealedMaterial) == 0 {
		return failed(e.KeyId, reject(CodeValidation, "new key material is required"))
	}
	switch e.RotationType {
	case eventsv1.RotationType_ROTATION_TYPE_AUTOMATIC:
		if k.Origin == originExternal || !k.IsSymmetric() {
			return failed(e.KeyId, rotationRefused(k))
		}
	case eventsv1.RotationType_ROTATION_TYPE_ON_DEMAND:
		if r := rotationRefused(k); r != nil {
			return failed(e.KeyId, r)
		}
	default:
		return failed(e.KeyId, reject(CodeValidation, "rotation type %v cannot be proposed", e.RotationType))
	}
	if r := usableForRotation(k); r != nil {
		return failed(e.KeyId, r)
	}
	if e.ExpectedCurrentVersion != k.CurrentVersion() {
		return failed(e.KeyId, reject(CodeConflict, "key %s is at version %d, not %d",
			e.KeyId, k.CurrentVersion(), e.ExpectedCurrentVersion))
	}
	if e.RotationType == eventsv1.RotationType_ROTATION_TYPE_AUTOMATIC {
		at, ok := RotationDue(k)
		if !ok {
			return failed(e.KeyId, reject(CodeConflict, "automatic rotation of key %s is off", e.KeyId))
		}
		if c.t < at {
			return failed(e.KeyId, reject(CodeConflict, "key %s is not due for rotation", e.KeyId))
		}
		k.Rotation.LastRotation = c.t
		k.Rotation.NextRotation = c.t + k.Rotation.PeriodSec*nsPerSec
	} else {
		if e.OnDemandLimit > 0 && k.OnDemand >= e.OnDemandLimit {
			return failed(e.KeyId, reject(CodeLimitExceeded, "key %s has reached its limit of %d on-demand rotations",
				e.KeyId, e.OnDemandLimit))
		}
		k.OnDemand++
	}
	k.Versions = append(k.Versions, Version{
		Number:    k.CurrentVersion() + 1,
		Type:      e.RotationType,
		CreatedAt: c.t,
		Sealed:    e.SealedMaterial,
	})
	return f.commit(c, k)
}

// applyRotateStaged makes an EXTERNAL key's staged material current as a new
// ON_DEMAND version. The event names the staged material's fingerprint, so a
// rotation proposed before the material was staged again, or twice, is a
// rejection rather than a rotation to other material.
func applyRotateStaged(f *FSM, c *applyCtx, k *Key, e *eventsv1.RotateKey) *Result {
	if e.RotationType != eventsv1.RotationType_ROTATION_TYPE_ON_DEMAND || len(e.SealedMaterial) != 0 {
		return failed(e.KeyId, reject(CodeValidation, "staged material is made current only by an ON_DEMAND rotation"))
	}
	if k.Origin != originExternal || !k.IsSymmetric() {
		return failed(e.KeyId, reject(CodeUnsupported, "key %s has no imported material to rotate to", k.ID))
	}
	if r := usableForRotation(k); r != nil {
		return failed(e.KeyId, r)
	}
	if r := NoStagedMaterial(k); r != nil {
		return failed(e.KeyId, r)
	}
	st := k.Staged
	if !bytes.Equal(st.Fingerprint, e.StagedMaterialFingerprint) {
		return failed(e.KeyId, reject(CodeConflict, "key %s has other key material pending rotation", k.ID))
	}
	if e.ExpectedCurrentVersion != k.CurrentVersion() || st.Version != k.CurrentVersion()+1 {
		return failed(e.KeyId, reject(CodeConflict, "key %s is at version %d, not %d",
			e.KeyId, k.CurrentVersion(), e.ExpectedCurrentVersion))
	}
	if st.Expiration == eventsv1.ExpirationModel_EXPIRATION_MODEL_KEY_MATERIAL_EXPIRES && st.ValidTo <= c.t {
		return failed(e.KeyId, reject(CodeInvalidState, "the key material pending rotation for key %s has expired", k.ID))
	}
	if e.OnDemandLimit > 0 && k.OnDemand >= e.OnDemandLimit {
		return failed(e.KeyId, reject(CodeLimitExceeded, "key %s has reached its limit of %d on-demand rotations",
			e.KeyId, e.OnDemandLimit))
	}
	k.OnDemand++
	k.Versions = append(k.Versions, Version{Number: st.Version, Type: eventsv1.RotationType_ROTATION_TYPE_ON_DEMAND,
		CreatedAt: c.t, Sealed: st.Sealed, Fingerprint: st.Fingerprint})
	k.Expiration, k.ValidTo = st.Expiration, st.ValidTo
	k.Staged = nil
	return f.commit(c, k)
}

// NoStagedMaterial is the rejection for an on-demand rotation of an EXTERNAL
// key that has no material pending rotation (nil when it has some); rpc
// answers it before proposing, the state machine again when it applies.
func NoStagedMaterial(k *Key) *Rejection {
	if k.Staged != nil {
		return nil
	}
	return reject(CodeInvalidState, "key %s has no key material pending rotation; import new key material with ImportType NEW_KEY_MATERIAL first", k.ID)
}
