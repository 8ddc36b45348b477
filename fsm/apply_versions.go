package fsm

func init() {
	register("update_key_version_policy", applyUpdateKeyVersionPolicy)
	register("destroy_key_version", applyDestroyKeyVersion)
}

// DecryptableVersion says whether version n of key k may still decrypt,
// and if not, why: it was destroyed, or it is below the key's minimum
// decryption version. Every node answers alike from its applied state.
func DecryptableVersion(k *Key, n uint32) *Rejection {
	v := k.Version(n)
	if v == nil {
		return reject(CodeNotFound, "key %s has no version %d", k.ID, n)
	}
	if v.DestroyedAt != 0 {
		return reject(CodeInvalidState, "version %d of key %s was destroyed; ciphertexts under it can no longer be decrypted", n, k.ID)
	}
	if n < k.MinDecryptionVersion {
		return reject(CodeInvalidState, "version %d of key %s is below the key's minimum decryption version %d", n, k.ID, k.MinDecryptionVersion)
	}
	return nil
}

// applyUpdateKeyVersionPolicy sets the minimum decryption version. It may
// be raised up to the current version, and lowered again as long as every
// version it re-admits still has its material.
func applyUpdateKeyVersionPolicy(f *FSM, c *applyCtx) *Result {
	e := c.env.GetUpdateKeyVersionPolicy()
	k, r := f.editKey(e.KeyId)
	if r != nil {
		return failed(e.KeyId, r)
	}
	if !k.IsSymmetric() {
		return failed(e.KeyId, reject(CodeUnsupported, "key %s has key spec %s; version controls apply to SYMMETRIC_DEFAULT keys", k.ID, k.KeySpec))
	}
	if e.Automatic {
		// The scheduler's retirement (RetireDue): applies only while the
		// rule still asks for exactly this minimum at this version, so a
		// stale or repeated proposal is a rejection.
		want, ok := RetireDue(k)
		switch {
		case k.CurrentVersion() != e.ExpectedCurrentVersion:
			return failed(e.KeyId, reject(CodeConflict, "key %s is at version %d, not %d",
				e.KeyId, k.CurrentVersion(), e.ExpectedCurrentVersion))
		case !ok || want != e.MinDecryptionVersion:
			return failed(e.KeyId, reject(CodeConflict, "key %s has no versions to retire down to minimum %d",
				e.KeyId, e.MinDecryptionVersion))
		}
		k.MinDecryptionVersion = want
		return f.commit(c, k)
	}
	lowering := e.MinDecryptionVersion < k.MinDecryptionVersion
	lo := e.MinDecryptionVersion
	if lo == 0 || lo > k.CurrentVersion() {
		return failed(e.KeyId, reject(CodeValidation, "minimum decryption version %d is out of range 1..%d", lo, k.CurrentVersion()))
	}
	for n := lo; n < k.MinDecryptionVersion; n++ {
		if k.Versions[n-1].DestroyedAt != 0 {
			return failed(e.KeyId, reject(CodeInvalidState, "version %d of key %s was destroyed; the minimum decryption version cannot go below %d",
				n, k.ID, n+1))
		}
	}
	if lo == 1 {
		lo = 0 // one spelling for "every version"
	}
	k.MinDecryptionVersion = lo
	if lowering {
		// Only keys with a MaxDecryptionVersions limit (a field newer than
		// this event) can refuse here, so older logs replay unchanged.
		if _, over := RetireDue(k); over {
			return failed(e.KeyId, reject(CodeValidation,
				"key %s keeps at most %d versions available for decryption; raise or clear its max decryption versions first",
				k.ID, k.Rotation.MaxDecryptionVersions))
		}
	}
	return f.commit(c, k)
}

// applyDestroyKeyVersion crypto-shreds one version: its sealed material
// leaves the state (so snapshots and new nodes never hold it again); the
// version's record stays, marked destroyed. The current version, the one
// Encrypt uses, cannot be destroyed.
func applyDestroyKeyVersion(f *FSM, c *applyCtx) *Result {
	e := c.env.GetDestroyKeyVersion()
	k, r := f.editKey(e.KeyId)
	if r != nil {
		return failed(e.KeyId, r)
	}
	if !k.IsSymmetric() {
		return failed(e.KeyId, reject(CodeUnsupported, "key %s has key spec %s; version controls apply to SYMMETRIC_DEFAULT keys", k.ID, k.KeySpec))
	}
	v := k.Version(e.Version)
	switch {
	case v == nil:
		return failed(e.KeyId, reject(CodeNotFound, "key %s has no version %d", k.ID, e.Version))
	case e.Version == k.CurrentVersion():
		return failed(e.KeyId, reject(CodeValidation, "version %d is the current version of key %s and cannot be destroyed", e.Version, k.ID))
	case v.DestroyedAt != 0:
		return failed(e.KeyId, reject(CodeInvalidState, "version %d of key %s is already destroyed", e.Version, k.ID))
	}
	vs := make([]Version, len(k.Versions))
	copy(vs, k.Versions)
	vs[e.Version-1].Sealed = nil
	vs[e.Version-1].DestroyedAt = c.t
	k.Versions = vs
	return f.commit(c, k)
}
