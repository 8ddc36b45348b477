package fsm

import (
	"sort"
	"strings"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

// Names shared with the proto schema, so callers need not import it for the
// common enums.
type (
	KeyState        = eventsv1.KeyState
	Origin          = eventsv1.Origin
	RotationType    = eventsv1.RotationType
	ExpirationModel = eventsv1.ExpirationModel
)

// Key states, origins and rotation types, for callers of the queries.
const (
	KeyStateEnabled         = eventsv1.KeyState_KEY_STATE_ENABLED
	KeyStateDisabled        = eventsv1.KeyState_KEY_STATE_DISABLED
	KeyStatePendingDeletion = eventsv1.KeyState_KEY_STATE_PENDING_DELETION
	KeyStatePendingImport   = eventsv1.KeyState_KEY_STATE_PENDING_IMPORT
	KeyStateDeleted         = eventsv1.KeyState_KEY_STATE_DELETED

	OriginGenerated = eventsv1.Origin_ORIGIN_GENERATED
	OriginExternal  = eventsv1.Origin_ORIGIN_EXTERNAL
	OriginService   = eventsv1.Origin_ORIGIN_SERVICE
)

// MaxHistory bounds a key's retained event history (schema-2 entries on):
// when an event would make it longer, the oldest historyTrimBatch entries
// after the first are dropped at once, so a key keeps between
// MaxHistory-historyTrimBatch and MaxHistory entries and trimming copies the
// list once per historyTrimBatch events, not on every one. History[0], the
// creating event, is always kept (its principal is the key's creator);
// versions are never dropped. Every node runs the same rule on the same
// entries, so the trimmed history is the same everywhere. It is a constant
// because every node must use the same value.
const MaxHistory = 1000

// historyTrimBatch is how many entries one trim drops (see MaxHistory).
const historyTrimBatch = 100

// MaxTags is the most tags a key may have (AWS KMS's limit); a schema-2
// CreateKey or TagKey that would exceed it is rejected with
// CodeLimitExceeded.
const MaxTags = 50

// StateName is the AWS spelling of a key state ("Enabled", "PendingDeletion", …).
func StateName(s KeyState) string { return stateName(s) }

// Key is one key's replicated state.
//
// A *Key held by the state machine is never modified in place: Apply copies
// it, changes the copy and swaps it in. So a *Key returned by a query, or
// captured by a snapshot, stays a consistent point-in-time view. Callers must
// treat it, and every slice in it, as read-only.
type Key struct {
	ID          string          // UUID chosen by the proposer
	Description string          // free text from the user
	Origin      Origin          // GENERATED, EXTERNAL (imported) or SERVICE (managed)
	KeySpec     string          // SYMMETRIC_DEFAULT, RSA_*, ECC_NIST_*, HMAC_* (keyspec.go)
	KeyUsage    string          // ENCRYPT_DECRYPT, SIGN_VERIFY or GENERATE_VERIFY_MAC
	State       KeyState        // lifecycle state
	CreatedAt   int64           // Unix nanoseconds, from the CreateKey event
	DeletionAt  int64           // when PendingDeletion ends; 0 otherwise
	Rotation    Rotation        // automatic rotation settings
	OnDemand    uint32          // on-demand rotations so far (the per-key limit counts these)
	Versions    []Version       // versions 1..n in order; never removed
	Policy      string          // key policy JSON; "" means the default policy
	Tags        []Tag           // sorted by key
	Import      *ImportParams   // latest import parameters (EXTERNAL keys)
	Expiration  ExpirationModel // of the imported material
	ValidTo     int64           // imported material expires then; 0 = never
	History     []HistoryEntry  // applied events, hash-chained; History[0] is the creating event
	// HistoryDropped is how many entries were dropped from the history to
	// bound it (the ones right after History[0]); HistoryDroppedHead is the
	// chain head of the last of them, from which History[1].Hash chains.
	HistoryDropped     uint64
	HistoryDroppedHead [32]byte
	// Grants on the key, sorted by ID (apply_grants.go). Never changed in
	// place: a change builds a new slice, as readers may hold the old one.
	Grants []Grant
	// MinDecryptionVersion: versions below it refuse to decrypt; 0 or 1
	// allows all (apply_versions.go).
	MinDecryptionVersion uint32
	// Staged is imported material waiting for an ON_DEMAND rotation
	// (PENDING_ROTATION); nil when none. Replaced, never changed in place.
	Staged *StagedMaterial

	seq int // position in creation order
}

// Version is one generation of a key's material.
type Version struct {
	Number      uint32       // 1, 2, 3 …
	Type        RotationType // how it came to be
	CreatedAt   int64        // Unix nanoseconds
	Sealed      []byte       // material sealed under the root key; nil once destroyed or expired
	Fingerprint []byte       // keyed fingerprint of imported material
	DestroyedAt int64        // when DestroyKeyVersion shredded it; 0 if not
}

// StagedMaterial is new imported material that does not encrypt yet: an
// ImportKeyMaterial with NEW_KEY_MATERIAL staged it, and an ON_DEMAND
// RotateKey makes it version Version (current + 1 when it was staged).
type StagedMaterial struct {
	Version     uint32          // the version it becomes
	Sealed      []byte          // sealed under the root key for (key, Version)
	Fingerprint []byte          // keyed fingerprint; its hex is the KeyMaterialId
	Expiration  ExpirationModel // expiration model it was imported with
	ValidTo     int64           // its expiry when it becomes current; 0 = never
	ImportedAt  int64           // Unix nanoseconds
}

// Rotation holds a key's automatic rotation settings.
type Rotation struct {
	Enabled      bool  // automatic rotation on
	PeriodSec    int64 // rotation period in seconds
	LastRotation int64 // last automatic rotation, or when rotation was enabled
	NextRotation int64 // LastRotation + period; due when the clock passes it
	// MaxDecryptionVersions: at most this many versions stay available for
	// decryption; the scheduler retires the oldest beyond it (RetireDue).
	// 0 = unlimited.
	MaxDecryptionVersions uint32
}

// ImportParams are the wrapping key and token of a pending import.
type ImportParams struct {
	TokenID           string // identifies the import token
	WrappingKeySpec   string // RSA_2048 | RSA_3072 | RSA_4096
	WrappingAlgorithm string // RSAES_OAEP_SHA_256 | ...
	PublicKeyDER      []byte // PKIX public key
	SealedPrivateKey  []byte // PKCS#8 private key sealed under the root key
	ExpiresAt         int64  // token not valid from then on
}

// Tag is one key/value tag.
type Tag struct {
	Key, Value string
}

// HistoryEntry records one event applied to a key. Hash chains the entries:
// Hash_n = SHA-256(Hash_{n-1} || entry bytes).
type HistoryEntry struct {
	Type      string   // event name, e.g. "RotateKey"
	Time      int64    // clamped event time
	Principal string   // who asked
	RequestID string   // idempotency token
	State     KeyState // key state after the event
	Version   uint32   // current version after the event
	Hash      [32]byte // chain head after this entry
}

// Alias maps a friendly name to a key.
type Alias struct {
	Name      string
	KeyID     string
	CreatedAt int64
	UpdatedAt int64 // last change of target; CreatedAt if never
}

// Node is a cluster member's advertised addresses (RegisterNode).
type Node struct {
	ID       string
	GRPCAddr string
	RaftAddr string
	// MaxSchema is the newest event schema the node announced; 0 for a node
	// that announced none (an older build: schema 1). See SupportedSchema.
	MaxSchema uint32
}

// SupportedSchema is the newest event schema the node understands, as far
// as the state knows.
func (n Node) SupportedSchema() uint32 { return max(n.MaxSchema, 1) }

// CurrentVersion is the newest version number, 0 when the key has none.
func (k *Key) CurrentVersion() uint32 { return uint32(len(k.Versions)) }

// Version returns version n, or nil.
func (k *Key) Version(n uint32) *Version {
	if n == 0 || int(n) > len(k.Versions) {
		return nil
	}
	return &k.Versions[n-1]
}

// HasMaterial reports whether the newest version's material is present.
func (k *Key) HasMaterial() bool {
	n := len(k.Versions)
	return n > 0 && len(k.Versions[n-1].Sealed) > 0
}

// Creator is the principal of the event that created the key ("" for the
// system). It survives history trimming.
func (k *Key) Creator() string {
	if len(k.History) == 0 {
		return ""
	}
	return k.History[0].Principal
}

// trimHistory drops the oldest entries after the first so that
// MaxHistory-historyTrimBatch remain. It builds a new slice: the old one may
// still be shared with a snapshot or a reader.
func (k *Key) trimHistory() {
	keep := MaxHistory - historyTrimBatch - 1 // newest entries kept after History[0]
	drop := len(k.History) - 1 - keep         // History[1 : 1+drop] go
	if drop <= 0 {
		return
	}
	h := make([]HistoryEntry, 1+keep, MaxHistory+1)
	h[0] = k.History[0]
	copy(h[1:], k.History[1+drop:])
	k.HistoryDroppedHead = k.History[drop].Hash
	k.HistoryDropped += uint64(drop)
	k.History = h
}

// HistoryHead is the hash chain head of the key's history.
func (k *Key) HistoryHead() [32]byte {
	if len(k.History) == 0 {
		return [32]byte{}
	}
	return k.History[len(k.History)-1].Hash
}

// Key returns the key with this ID.
func (f *FSM) Key(id string) (*Key, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	k, ok := f.keys[id]
	return k, ok
}

// ResolveKey finds a key by ID, ARN, alias name ("alias/x") or alias ARN.
func (f *FSM) ResolveKey(ref string) (*Key, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.resolveLocked(ref)
}

func (f *FSM) resolveLocked(ref string) (*Key, error) {
	if i := strings.LastIndex(ref, ":"); strings.HasPrefix(ref, "arn:") && i >= 0 {
		ref = ref[i+1:]
		ref = strings.TrimPrefix(ref, "key/")
	}
	if strings.HasPrefix(ref, "alias/") {
		a, ok := f.aliases[ref]
		if !ok {
			return nil, reject(CodeNotFound, "alias %s is not found", ref)
		}
		ref = a.KeyID
	}
	k, ok := f.keys[ref]
	if !ok {
		return nil, reject(CodeNotFound, "key %s is not found", ref)
	}
	return k, nil
}

// Keys returns up to limit keys in creation order, starting after the key
// with ID after ("" = from the first), and whether more follow.
func (f *FSM) Keys(after string, limit int) ([]*Key, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	start := 0
	if after != "" {
		k, ok := f.keys[after]
		if !ok {
			return nil, false
		}
		start = k.seq + 1
	}
	end := len(f.order)
	if limit > 0 && start+limit < end {
		end = start + limit
	}
	if start >= end {
		return nil, false
	}
	out := make([]*Key, end-start)
	copy(out, f.order[start:end])
	return out, end < len(f.order)
}

// KeyCount is the number of keys ever created (deleted ones included).
func (f *FSM) KeyCount() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.order)
}

// ForEachKey calls fn for every key in creation order until fn returns false.
// It works on a point-in-time copy of the key list, so fn may call other
// query methods.
func (f *FSM) ForEachKey(fn func(*Key) bool) {
	f.mu.RLock()
	keys := make([]*Key, len(f.order))
	copy(keys, f.order)
	f.mu.RUnlock()
	for _, k := range keys {
		if !fn(k) {
			return
		}
	}
}

// Aliases returns aliases sorted by name; keyID "" means all of them.
func (f *FSM) Aliases(keyID string) []Alias {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Alias, 0, len(f.aliases))
	for _, a := range f.aliases {
		if keyID == "" || a.KeyID == keyID {
			out = append(out, *a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Nodes returns the registered nodes sorted by ID.
func (f *FSM) Nodes() []Node {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Node, 0, len(f.nodes))
	for _, n := range f.nodes {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Node returns the registered addresses of one node.
func (f *FSM) Node(id string) (Node, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	n, ok := f.nodes[id]
	return n, ok
}

// Clock is the state's clock, Unix nanoseconds: the clamped time of the last
// entry applied (it never goes back, and moves at most MaxClockStep per entry).
func (f *FSM) Clock() int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.clock
}

// RootKeyCheck is the cluster's root-key check value and root-key ID, as set
// by the first RegisterNode that carried one; nil and "" until then. A node
// whose own root key gives another check value must not serve.
func (f *FSM) RootKeyCheck() (check []byte, rootKeyID string) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.rootKeyCheck == nil {
		return nil, ""
	}
	return append([]byte(nil), f.rootKeyCheck...), f.rootKeyID
}

// AppliedIndex is the Raft index of the last entry applied to this state machine.
func (f *FSM) AppliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.applied
}

// History returns a key's retained event history (read-only); see
// MaxHistory and Key.HistoryDropped for what was dropped.
func (f *FSM) History(id string) ([]HistoryEntry, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	k, ok := f.keys[id]
	if !ok {
		return nil, false
	}
	return k.History, true
}
