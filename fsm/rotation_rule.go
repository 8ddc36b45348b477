package fsm

// RotationDue is the one rule for "when is key k due for its next automatic
// rotation?" (DESIGN §4). The leader's scheduler calls it to decide when to
// propose a RotateKey AUTOMATIC event, and the state machine calls it when
// that event applies, so the two can never disagree: an event proposed from a
// stale view is only a deterministic rejection.
//
// ok is false when the key is not on an automatic schedule at all:
//   - only Enabled keys rotate. A Disabled or PendingDeletion key keeps
//     NextRotation, so once it is enabled again it is due at once when
//     overdue, else at the old plan;
//   - imported material (EXTERNAL) never rotates automatically;
//   - only symmetric keys rotate;
//   - a key without a version (pending import) has nothing to rotate.
//
// Managed (SERVICE) keys carry Rotation.Enabled from creation and follow the
// same rule. The key is due once the state clock reaches at.
func RotationDue(k *Key) (at int64, ok bool) {
	if k.State != KeyStateEnabled || !k.Rotation.Enabled || k.Origin == OriginExternal ||
		!k.IsSymmetric() || k.Rotation.NextRotation <= 0 || k.CurrentVersion() == 0 {
		return 0, false
	}
	return k.Rotation.NextRotation, true
}

// RetireDue is the one rule for "must the oldest versions of key k stop
// decrypting?": a key on automatic rotation with a limit of
// Rotation.MaxDecryptionVersions keeps at most that many versions available
// for decryption (not destroyed, not below MinDecryptionVersion). When a
// rotation takes it past the limit, the leader's scheduler proposes an
// automatic UpdateKeyVersionPolicy raising the minimum to minVersion, and
// the state machine applies it only while this rule still asks for exactly
// that minimum. Retiring never destroys material: destroying a version
// stays an explicit operator action (DestroyKeyVersion).
//
// ok is false when nothing needs retiring, or the key is not on an
// automatic schedule (the same conditions as RotationDue, except the time).
func RetireDue(k *Key) (minVersion uint32, ok bool) {
	limit := k.Rotation.MaxDecryptionVersions
	if limit == 0 || k.State != KeyStateEnabled || !k.Rotation.Enabled || k.Origin == OriginExternal || !k.IsSymmetric() {
		return 0, false
	}
	lo := max(k.MinDecryptionVersion, 1)
	var kept uint32
	for n := k.CurrentVersion(); n >= lo && n > 0; n-- {
		if k.Versions[n-1].DestroyedAt != 0 {
			continue
		}
		if kept == limit {
			// n is decryptable and one too many: the kept versions start
			// above it, at the oldest of them.
			return minKept(k, n), true
		}
		kept++
	}
	return 0, false
}

// minKept is the oldest decryptable version above version n.
func minKept(k *Key, n uint32) uint32 {
	for m := n + 1; m <= k.CurrentVersion(); m++ {
		if k.Versions[m-1].DestroyedAt == 0 {
			return m
		}
	}
	return k.CurrentVersion()
}
