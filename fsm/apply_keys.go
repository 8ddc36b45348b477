package fsm

import (
	"sort"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

const (
	stEnabled         = KeyStateEnabled
	stDisabled        = KeyStateDisabled
	stPendingDeletion = KeyStatePendingDeletion
	stPendingImport   = KeyStatePendingImport
	stDeleted         = KeyStateDeleted

	originGenerated = OriginGenerated
	originExternal  = OriginExternal
	originService   = OriginService

	// Default key spec and usage; keyspec.go lists the others.
	DefaultKeySpec  = "SYMMETRIC_DEFAULT"
	DefaultKeyUsage = "ENCRYPT_DECRYPT"

	nsPerSec = int64(1e9)
	// maxPeriodSec bounds rotation periods and deletion windows accepted by
	// Apply (the API enforces the cluster's tighter bounds), keeping time
	// arithmetic far from overflow.
	maxPeriodSec = 100 * 365 * 86400
)

func init() {
	register("create_key", applyCreateKey)
	register("enable_key", applyEnableKey)
	register("disable_key", applyDisableKey)
	register("schedule_key_deletion", applyScheduleKeyDeletion)
	register("cancel_key_deletion", applyCancelKeyDeletion)
	register("delete_key", applyDeleteKey)
	register("put_key_policy", applyPutKeyPolicy)
	register("update_key_description", applyUpdateKeyDescription)
	register("tag_key", applyTagKey)
	register("untag_key", applyUntagKey)
}

// stateName is the AWS spelling of a key state, for messages.
func stateName(s KeyState) string {
	switch s {
	case stEnabled:
		return "Enabled"
	case stDisabled:
		return "Disabled"
	case stPendingDeletion:
		return "PendingDeletion"
	case stPendingImport:
		return "PendingImport"
	case stDeleted:
		return "Deleted"
	}
	return "Unknown"
}

func invalidState(k *Key) *Rejection {
	return reject(CodeInvalidState, "key %s is %s", k.ID, stateName(k.State))
}

func applyCreateKey(f *FSM, c *applyCtx) *Result {
	e := c.env.GetCreateKey()
	if e.KeyId == "" {
		return failed("", reject(CodeValidation, "key ID is required"))
	}
	if _, ok := f.keys[e.KeyId]; ok {
		return failed(e.KeyId, reject(CodeAlreadyExists, "key %s already exists", e.KeyId))
	}
	k := &Key{
		ID:          e.KeyId,
		Description: e.Description,
		Origin:      e.Origin,
		KeySpec:     e.KeySpec,
		KeyUsage:    e.KeyUsage,
		CreatedAt:   c.t,
		Policy:      e.Policy,
		Tags:        mergeTags(nil, e.Tags),
	}
	if k.KeySpec == "" {
		k.KeySpec = DefaultKeySpec
	}
	if k.KeyUsage == "" {
		k.KeyUsage = DefaultKeyUsage
	}
	if !validKeySpec(k.KeySpec, k.KeyUsage) {
		return failed(e.KeyId, reject(CodeValidation, "key spec %s with usage %s is not supported", k.KeySpec, k.KeyUsage))
	}
	// Managed keys are symmetric; of the others only HMAC keys may have
	// imported material (RSA and ECC private keys cannot be imported).
	if (e.Origin == originService && !k.IsSymmetric()) || (e.Origin == originExternal && !k.IsSymmetric() && !isHMAC(k.KeySpec)) {
		return failed(e.KeyId, reject(CodeUnsupported, "key spec %s cannot have origin %s", k.KeySpec, e.Origin))
	}
	if r := validTags(e.Tags); r != nil {
		return failed(e.KeyId, r)
	}
	if r := tagLimit(c, k); r != nil {
		return failed(e.KeyId, r)
	}
	switch e.Origin {
	case originGenerated, originService:
		if len(e.SealedMaterial) == 0 {
			return failed(e.KeyId, reject(CodeValidation, "key material is required"))
		}
		k.State = stEnabled
		k.Versions = []Version{{Number: 1, Type: eventsv1.RotationType_ROTATION_TYPE_INITIAL, CreatedAt: c.t, Sealed: e.SealedMaterial}}
		if e.Origin == originService {
			if e.RotationPeriodSeconds <= 0 || e.RotationPeriodSeconds > maxPeriodSec {
				return failed(e.KeyId, reject(CodeValidation, "managed keys need a rotation period"))
			}
			k.Rotation = Rotation{Enabled: true, PeriodSec: e.RotationPeriodSeconds, LastRotation: c.t,
				NextRotation: c.t + e.RotationPeriodSeconds*nsPerSec}
		}
	case originExternal:
		if len(e.SealedMaterial) != 0 {
			return failed(e.KeyId, reject(CodeValidation, "keys with origin EXTERNAL are created without material"))
		}
		k.State = stPendingImport
	default:
		return failed(e.KeyId, reject(CodeValidation, "unknown origin %v", e.Origin))
	}
	return f.commit(c, k)
}

func applyEnableKey(f *FSM, c *applyCtx) *Result {
	id := c.env.GetEnableKey().KeyId
	k, r := f.editKey(id)
	if r != nil {
		return failed(id, r)
	}
	switch k.State {
	case stEnabled, stDisabled:
		// A key whose rotation fell due while it was disabled keeps its
		// NextRotation in the past, so the scheduler rotates it at once; a key
		// within its period keeps the old plan.
		k.State = stEnabled
	default:
		return failed(id, invalidState(k))
	}
	return f.commit(c, k)
}

func applyDisableKey(f *FSM, c *applyCtx) *Result {
	id := c.env.GetDisableKey().KeyId
	k, r := f.editKey(id)
	if r != nil {
		return failed(id, r)
	}
	switch k.State {
	case stEnabled, stDisabled:
		k.State = stDisabled
	default:
		return failed(id, invalidState(k))
	}
	return f.commit(c, k)
}

func applyScheduleKeyDeletion(f *FSM, c *applyCtx) *Result {
	e := c.env.GetScheduleKeyDeletion()
	k, r := f.editKey(e.KeyId)
	if r != nil {
		return failed(e.KeyId, r)
	}
	if e.PendingWindowSeconds <= 0 || e.PendingWindowSeconds > maxPeriodSec {
		return failed(e.KeyId, reject(CodeValidation, "pending window of %d seconds is out of range", e.PendingWindowSeconds))
	}
	switch k.State {
	case stEnabled, stDisabled, stPendingImport:
		k.State = stPendingDeletion
		k.DeletionAt = c.t + e.PendingWindowSeconds*nsPerSec
	default:
		return failed(e.KeyId, invalidState(k))
	}
	return f.commit(c, k)
}

// applyCancelKeyDeletion leaves the key Disabled (PendingImport when it has no
// material), with its rotation settings as they were.
func applyCancelKeyDeletion(f *FSM, c *applyCtx) *Result {
	id := c.env.GetCancelKeyDeletion().KeyId
	k, r := f.editKey(id)
	if r != nil {
		return failed(id, r)
	}
	if k.State != stPendingDeletion {
		return failed(id, invalidState(k))
	}
	k.State = stDisabled
	if !k.HasMaterial() {
		k.State = stPendingImport
	}
	k.DeletionAt = 0
	return f.commit(c, k)
}

// applyDeleteKey ends a waiting period: material is destroyed, aliases go,
// the record and its history stay. The guard rejects a stale or early proposal.
func applyDeleteKey(f *FSM, c *applyCtx) *Result {
	e := c.env.GetDeleteKey()
	k, r := f.editKey(e.KeyId)
	if r != nil {
		return failed(e.KeyId, r)
	}
	if k.State != stPendingDeletion {
		return failed(e.KeyId, invalidState(k))
	}
	if k.DeletionAt != e.ExpectedDeletionTimeUnixNano {
		return failed(e.KeyId, reject(CodeConflict, "key %s deletion time does not match", e.KeyId))
	}
	if c.t < k.DeletionAt {
		return failed(e.KeyId, reject(CodeConflict, "key %s is not due for deletion yet", e.KeyId))
	}
	k.State = stDeleted
	k.Versions = wipeMaterial(k.Versions)
	k.Staged = nil
	k.Import = nil
	k.Rotation.Enabled = false
	for name, a := range f.aliases {
		if a.KeyID == k.ID {
			delete(f.aliases, name)
		}
	}
	return f.commit(c, k)
}

// wipeMaterial returns a copy of versions with all sealed material dropped
// (a copy, because snapshots may still hold the old slice).
func wipeMaterial(vs []Version) []Version {
	out := make([]Version, len(vs))
	copy(out, vs)
	for i := range out {
		out[i].Sealed = nil
	}
	return out
}

func applyPutKeyPolicy(f *FSM, c *applyCtx) *Result {
	e := c.env.GetPutKeyPolicy()
	k, r := f.editKey(e.KeyId)
	if r != nil {
		return failed(e.KeyId, r)
	}
	if e.PolicyName != "" && e.PolicyName != "default" {
		return failed(e.KeyId, reject(CodeValidation, "policy name must be \"default\""))
	}
	if e.Policy == "" {
		return failed(e.KeyId, reject(CodeValidation, "policy is required"))
	}
	k.Policy = e.Policy
	return f.commit(c, k)
}

func applyUpdateKeyDescription(f *FSM, c *applyCtx) *Result {
	e := c.env.GetUpdateKeyDescription()
	k, r := f.editKey(e.KeyId)
	if r != nil {
		return failed(e.KeyId, r)
	}
	k.Description = e.Description
	return f.commit(c, k)
}

func applyTagKey(f *FSM, c *applyCtx) *Result {
	e := c.env.GetTagKey()
	k, r := f.editKey(e.KeyId)
	if r != nil {
		return failed(e.KeyId, r)
	}
	if r := validTags(e.Tags); r != nil {
		return failed(e.KeyId, r)
	}
	k.Tags = mergeTags(k.Tags, e.Tags)
	if r := tagLimit(c, k); r != nil {
		return failed(e.KeyId, r)
	}
	return f.commit(c, k)
}

func applyUntagKey(f *FSM, c *applyCtx) *Result {
	e := c.env.GetUntagKey()
	k, r := f.editKey(e.KeyId)
	if r != nil {
		return failed(e.KeyId, r)
	}
	drop := make(map[string]bool, len(e.TagKeys))
	for _, t := range e.TagKeys {
		drop[t] = true
	}
	kept := make([]Tag, 0, len(k.Tags))
	for _, t := range k.Tags {
		if !drop[t.Key] {
			kept = append(kept, t)
		}
	}
	k.Tags = kept
	return f.commit(c, k)
}

// tagLimit refuses (schema 2 on) a key with more than MaxTags tags.
func tagLimit(c *applyCtx, k *Key) *Rejection {
	if c.strict() && len(k.Tags) > MaxTags {
		return reject(CodeLimitExceeded, "key %s would have %d tags; the limit is %d", k.ID, len(k.Tags), MaxTags)
	}
	return nil
}

func validTags(tags []*eventsv1.Tag) *Rejection {
	for _, t := range tags {
		if t.GetKey() == "" {
			return reject(CodeValidation, "tag key is required")
		}
	}
	return nil
}

// mergeTags returns a new sorted tag list: old tags overwritten by add (the
// last value for a repeated key wins).
func mergeTags(old []Tag, add []*eventsv1.Tag) []Tag {
	m := make(map[string]string, len(old)+len(add))
	for _, t := range old {
		m[t.Key] = t.Value
	}
	for _, t := range add {
		m[t.GetKey()] = t.GetValue()
	}
	if len(m) == 0 {
		return nil
	}
	out := make([]Tag, 0, len(m))
	for k, v := range m {
		out = append(out, Tag{Key: k, Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}
