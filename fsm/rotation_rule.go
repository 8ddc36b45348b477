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
