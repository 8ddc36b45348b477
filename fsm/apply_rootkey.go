package fsm

import (
	"bytes"
	"crypto/sha256"
	"fmt"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

// Root-key rotation (docs/operations.md "Root key rotation"). An operator
// puts a new root key last in every node's root keyring and asks for a
// rotation: RequestRootKeyRotation records the target key, the leader then
// re-seals every blob under it with ResealMaterial events, and
// CompleteRootKeyRotation makes the target's check value the cluster's
// once nothing is left under older keys. The state machine cannot tell
// which root key sealed a blob (that is keycrypto's format), so each
// re-seal is guarded by the SHA-256 of the blob it replaces: a stale or
// repeated one is rejected alike on every node.

func init() {
	register("request_root_key_rotation", applyRequestRootKeyRotation)
	register("reseal_material", applyResealMaterial)
	register("complete_root_key_rotation", applyCompleteRootKeyRotation)
}

// RootKeyRotation is the requested root-key rotation not yet completed:
// the target key's ID and check value ("" and nil when none is requested).
func (f *FSM) RootKeyRotation() (targetID string, targetCheck []byte) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.rotateRootID, bytes.Clone(f.rotateRootCheck)
}

// SealedBlob is one blob sealed under the root key, for the re-seal loop
// and the per-root-key counts of cluster status.
type SealedBlob struct {
	Kind        eventsv1.ResealKind
	KeyID       string // key versions and import parameters
	Version     uint32 // key versions
	TokenID     string // import parameters: the import token the private key is bound to
	AccessKeyID string // access keys
	Identity    string // access keys: the identity the secret is bound to
	Sealed      []byte // read-only
}

// SealedBlobs calls fn for every sealed blob in the state (deleted keys
// excepted: nothing of theirs is opened again), keys in creation
// order then access keys by ID, until fn returns false. It holds the read
// lock, so fn must not call back into the FSM.
func (f *FSM) SealedBlobs(fn func(SealedBlob) bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, k := range f.order {
		if k.State == KeyStateDeleted {
			continue // nothing of a deleted key is ever opened again
		}
		for _, v := range k.Versions {
			if len(v.Sealed) > 0 && !fn(SealedBlob{Kind: eventsv1.ResealKind_RESEAL_KIND_KEY_VERSION,
				KeyID: k.ID, Version: v.Number, Sealed: v.Sealed}) {
				return
			}
		}
		if st := k.Staged; st != nil && len(st.Sealed) > 0 && !fn(SealedBlob{Kind: eventsv1.ResealKind_RESEAL_KIND_STAGED_MATERIAL,
			KeyID: k.ID, Version: st.Version, Sealed: st.Sealed}) {
			return
		}
		if p := k.Import; p != nil && len(p.SealedPrivateKey) > 0 && !fn(SealedBlob{
			Kind: eventsv1.ResealKind_RESEAL_KIND_IMPORT_PRIVATE_KEY, KeyID: k.ID, TokenID: p.TokenID, Sealed: p.SealedPrivateKey}) {
			return
		}
	}
	for _, a := range sortedAccessKeys(f.accessKeys, "") {
		if len(a.SealedSecret) > 0 && !fn(SealedBlob{Kind: eventsv1.ResealKind_RESEAL_KIND_ACCESS_KEY_SECRET,
			AccessKeyID: a.ID, Identity: a.Identity, Sealed: a.SealedSecret}) {
			return
		}
	}
}

// applyRequestRootKeyRotation records the target root key. A newer request
// replaces an unfinished one (a key added to the ring mid-rotation).
func applyRequestRootKeyRotation(f *FSM, c *applyCtx) *Result {
	e := c.env.GetRequestRootKeyRotation()
	if e.TargetRootKeyId == "" || len(e.TargetRootKeyCheck) == 0 {
		return failed("", reject(CodeValidation, "a root-key rotation needs the target root key's ID and check value"))
	}
	f.rotateRootID, f.rotateRootCheck = e.TargetRootKeyId, bytes.Clone(e.TargetRootKeyCheck)
	return &Result{}
}

// applyResealMaterial swaps one sealed blob for its re-sealed form while
// the blob is still the one the proposer read.
func applyResealMaterial(f *FSM, c *applyCtx) *Result {
	e := c.env.GetResealMaterial()
	if len(e.Sealed) == 0 || len(e.ExpectedSha256) != sha256.Size {
		return failed(e.KeyId, reject(CodeValidation, "a re-seal needs the new sealed blob and the SHA-256 of the one it replaces"))
	}
	stale := func(what string, cur []byte) *Rejection {
		if len(cur) == 0 {
			return reject(CodeInvalidState, "%s has no sealed material to re-seal", what)
		}
		if sum := sha256.Sum256(cur); !bytes.Equal(sum[:], e.ExpectedSha256) {
			return reject(CodeConflict, "%s changed since the re-seal was proposed", what)
		}
		return nil
	}
	switch e.Kind {
	case eventsv1.ResealKind_RESEAL_KIND_KEY_VERSION, eventsv1.ResealKind_RESEAL_KIND_IMPORT_PRIVATE_KEY,
		eventsv1.ResealKind_RESEAL_KIND_STAGED_MATERIAL:
		k, r := f.editKey(e.KeyId)
		if r != nil {
			return failed(e.KeyId, r)
		}
		if e.Kind == eventsv1.ResealKind_RESEAL_KIND_STAGED_MATERIAL {
			if k.Staged == nil || k.Staged.Version != e.Version {
				return failed(e.KeyId, reject(CodeInvalidState, "key %s has no key material pending rotation as version %d", k.ID, e.Version))
			}
			if r := stale("the key material pending rotation of key "+k.ID, k.Staged.Sealed); r != nil {
				return failed(e.KeyId, r)
			}
			st := *k.Staged
			st.Sealed = bytes.Clone(e.Sealed)
			k.Staged = &st
			return f.commit(c, k)
		}
		if e.Kind == eventsv1.ResealKind_RESEAL_KIND_IMPORT_PRIVATE_KEY {
			if k.Import == nil {
				return failed(e.KeyId, reject(CodeInvalidState, "key %s has no import parameters", k.ID))
			}
			if r := stale("the import parameters of key "+k.ID, k.Import.SealedPrivateKey); r != nil {
				return failed(e.KeyId, r)
			}
			p := *k.Import
			p.SealedPrivateKey = bytes.Clone(e.Sealed)
			k.Import = &p
			return f.commit(c, k)
		}
		v := k.Version(e.Version)
		if v == nil {
			return failed(e.KeyId, reject(CodeNotFound, "key %s has no version %d", k.ID, e.Version))
		}
		if r := stale(fmt.Sprintf("version %d of key %s", e.Version, k.ID), v.Sealed); r != nil {
			return failed(e.KeyId, r)
		}
		vs := append([]Version(nil), k.Versions...)
		vs[e.Version-1].Sealed = bytes.Clone(e.Sealed)
		k.Versions = vs
		return f.commit(c, k)
	case eventsv1.ResealKind_RESEAL_KIND_ACCESS_KEY_SECRET:
		a, ok := f.accessKeys[e.AccessKeyId]
		if !ok {
			return failed("", reject(CodeNotFound, "access key %s is not found", e.AccessKeyId))
		}
		if r := stale("access key "+a.ID, a.SealedSecret); r != nil {
			return failed("", r)
		}
		cp := *a
		cp.SealedSecret = bytes.Clone(e.Sealed)
		f.accessKeys[a.ID] = &cp
		return &Result{}
	default:
		return failed(e.KeyId, reject(CodeValidation, "unknown re-seal kind %v", e.Kind))
	}
}

// applyCompleteRootKeyRotation records the target key's check value as
// the cluster's and ends the rotation.
func applyCompleteRootKeyRotation(f *FSM, c *applyCtx) *Result {
	e := c.env.GetCompleteRootKeyRotation()
	if f.rotateRootID == "" || e.TargetRootKeyId != f.rotateRootID {
		return failed("", reject(CodeConflict, "no rotation to root key %q is in progress", e.TargetRootKeyId))
	}
	f.rootKeyCheck, f.rootKeyID = f.rotateRootCheck, f.rotateRootID
	f.rotateRootID, f.rotateRootCheck = "", nil
	return &Result{}
}
