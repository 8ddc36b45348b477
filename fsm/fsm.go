// Package fsm is raftkms's replicated state machine: it applies log entries
// (events) to the state of every key, answers read-only queries, and writes
// and reads snapshots.
//
// It is pure: no clock, no randomness, no network, no disk, no goroutines.
// Everything random or time-dependent was decided by the proposer and is
// carried in the event; the only time is the envelope's, clamped so that the
// state's clock never goes backwards nor (schema 2 on) leaps ahead by more
// than MaxClockStep per entry. Key material stays sealed (opaque
// bytes): this package never sees the root key.
package fsm

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math"
	"sync"
	"time"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// DefaultIdempotencyWindow is how long (in entry time) a request ID is
// remembered.
const DefaultIdempotencyWindow = 24 * time.Hour

// DefaultIdempotencyEntries is how many log entries a request ID is kept
// for at the least, whatever the entry times say.
const DefaultIdempotencyEntries = 100_000

// DefaultIdempotencyMaxEntries is how many log entries a request ID is kept
// for at the most: it bounds the memory remembered results take (about
// 200 bytes each) under a sustained write load, while still covering client
// retries by minutes even at thousands of writes a second.
const DefaultIdempotencyMaxEntries = 1_000_000

// MaxClockStep is the most one entry of schema 2 or later can move the state
// clock forward: t = min(max(entry time, clock), clock + MaxClockStep), once
// the clock is set (the first entry sets it). One far-future stamp from a
// leader whose clock runs ahead therefore cannot make every rotation,
// deletion and expiry due at once; it moves the state clock by at most this
// much. It does not bound a leader that stamps many entries ahead: the
// leader's own clock check against its peers does (rotation and raftnode).
// Because the state clock advances only with entries, an idle cluster's clock
// lags real time; a leader whose clock agrees with its peers proposes
// catch-up RegisterNode entries while it lags, so the cap never makes a
// waiting period shorter in real time, only (by up to the catch-up) longer.
// Every node must use the same value, so it is a constant, not a setting.
const MaxClockStep = 10 * time.Minute

// maxRequestIDBytes and maxPrincipalBytes bound the request ID and principal
// of schema-2 entries: both are kept in every history entry and in the
// request table, so their size bounds a key's snapshot record. They are far
// above what the API accepts.
const (
	maxRequestIDBytes   = 1024
	maxPrincipalBytes   = 4096
	maxFingerprintBytes = 64
)

// Config configures a state machine.
type Config struct {
	// IdempotencyWindow is how long, measured in event time, an applied
	// request ID is remembered. Zero means DefaultIdempotencyWindow. Every
	// node of a cluster must use the same value.
	IdempotencyWindow time.Duration

	// IdempotencyEntries is how many log entries, at the least, an applied
	// request ID is remembered for: an ID is forgotten only once it is both
	// older than the window in entry time and this many entries back. Entry
	// time alone is not enough: one leader with a clock far ahead stamps one
	// entry, the state's clock (which never goes back) jumps, and every ID
	// would be forgotten at once, so a client's retry would apply twice.
	// Zero means DefaultIdempotencyEntries. Every node must use the same value.
	IdempotencyEntries uint64

	// IdempotencyMaxEntries caps how many log entries back a request ID is
	// remembered, whatever its time. Zero means DefaultIdempotencyMaxEntries.
	IdempotencyMaxEntries uint64

	// MaxSchema is the newest envelope schema this node accepts (and
	// announces); zero means SchemaVersion. An entry of a newer schema halts
	// the node, as it would a build that knows only MaxSchema. Setting it
	// lower makes a node behave as an older build, for rolling upgrades and
	// their tests.
	MaxSchema uint32

	// OnChange, if set, is called after each applied event that changed a
	// key, with that key's ID — once for every key an event changed, so a
	// RotateKeys entry calls it for each item that applied — and with ""
	// after a Restore (everything may have changed). It runs on the apply
	// path: it must not block.
	OnChange func(keyID string)
}

// Result is what applying one entry produced. Err is nil or a *Rejection.
type Result struct {
	Index        uint64 // Raft index of the entry
	KeyID        string // the key the event was about
	Version      uint32 // the key's current version after the event
	DeletionTime int64  // for ScheduleKeyDeletion: when the key will be deleted
	GrantID      string // for CreateGrant: the grant made or matched
	Err          error  // deterministic rejection, or nil
	Duplicate    bool   // the request ID was seen before: this is the first result
	Skipped      bool   // an unknown event marked skippable was ignored
	// Items is, for a RotateKeys entry, the result of each rotation in the
	// event's order: which applied and which were rejected. Err above is then
	// nil unless the entry as a whole was refused (too many items, say), in
	// which case Items is empty and nothing applied.
	Items []ItemResult
}

// ItemResult is the result of one item of a batch event. Err is nil or a
// *Rejection.
type ItemResult struct {
	KeyID   string // the key the item was about
	Version uint32 // the key's current version after the item
	Err     error  // deterministic rejection of this item alone, or nil
}

// FSM is the state machine. Apply runs on one goroutine; queries may run
// concurrently with it.
type FSM struct {
	cfg Config

	mu      sync.RWMutex
	clock   int64  // max event time applied
	applied uint64 // Raft index of the last applied entry
	// lastSchema is the schema of the last applied entry (not state: for
	// operators and tests of rolling upgrades).
	lastSchema uint32
	gen        uint64          // bumped on every change, to cache the digest
	keys       map[string]*Key // by key ID
	order      []*Key          // creation order; order[k.seq] == keys[k.ID]
	aliases    map[string]*Alias
	nodes      map[string]Node
	requests   map[reqKey]*requestEntry
	reqQueue   []*requestEntry // apply order (so time order), for pruning
	reqHead    int

	accessKeys map[string]*AccessKey // AWS-protocol access keys by ID; never modified in place

	rootKeyCheck []byte // cluster's root-key check value; nil until a RegisterNode sets it
	rootKeyID    string // the root key's non-secret ID, with rootKeyCheck

	// A requested root-key rotation not yet completed (apply_rootkey.go).
	rotateRootID    string
	rotateRootCheck []byte

	// Modification indexes (modindex.go); not state.
	modKeys  map[string]uint64
	modOther uint64
	modFloor uint64 // index of the last restored snapshot

	digestMu  sync.Mutex
	digestGen uint64
	digest    [32]byte
}

// reqKey identifies a remembered request. Entries of schema 1 remember the
// raw request ID (scoped false, principal ""); later ones scope it to the
// principal, so one identity cannot collide with, or read, another's.
type reqKey struct {
	scoped    bool
	principal string
	id        string
}

func requestKey(env *eventsv1.Envelope) reqKey {
	if env.SchemaVersion < schemaTrust {
		return reqKey{id: env.RequestId}
	}
	return reqKey{scoped: true, principal: env.Principal, id: env.RequestId}
}

type requestEntry struct {
	key         reqKey
	fingerprint []byte // request fingerprint (scoped entries only)
	time        int64  // clamped entry time
	index       uint64 // Raft index of the entry
	result      storedResult
}

// remembered reports whether a request ID applied as e is still
// remembered at entry time t and index i: until it is old both in time and
// in log position, and never past IdempotencyMaxEntries entries.
func (f *FSM) remembered(e *requestEntry, t int64, i uint64) bool {
	if e.index+f.cfg.IdempotencyMaxEntries <= i {
		return false
	}
	return e.time >= t-int64(f.cfg.IdempotencyWindow) || e.index+f.cfg.IdempotencyEntries > i
}

type storedResult struct {
	code         Code
	msg          string
	keyID        string
	version      uint32
	deletionTime int64
	grantID      string
}

// New makes an empty state machine.
func New(cfg Config) (*FSM, error) {
	if cfg.IdempotencyWindow < 0 {
		return nil, fmt.Errorf("fsm: negative idempotency window")
	}
	if cfg.IdempotencyWindow == 0 {
		cfg.IdempotencyWindow = DefaultIdempotencyWindow
	}
	if cfg.IdempotencyEntries == 0 {
		cfg.IdempotencyEntries = DefaultIdempotencyEntries
	}
	if cfg.IdempotencyMaxEntries == 0 {
		cfg.IdempotencyMaxEntries = DefaultIdempotencyMaxEntries
	}
	if cfg.IdempotencyMaxEntries < cfg.IdempotencyEntries {
		return nil, fmt.Errorf("fsm: IdempotencyMaxEntries %d is below IdempotencyEntries %d", cfg.IdempotencyMaxEntries, cfg.IdempotencyEntries)
	}
	if cfg.MaxSchema == 0 {
		cfg.MaxSchema = SchemaVersion
	}
	if cfg.MaxSchema > SchemaVersion {
		return nil, fmt.Errorf("fsm: MaxSchema %d is newer than this build's schema %d", cfg.MaxSchema, SchemaVersion)
	}
	f := &FSM{cfg: cfg}
	f.reset()
	return f, nil
}

func (f *FSM) reset() {
	f.clock, f.applied = 0, 0
	f.keys = map[string]*Key{}
	f.order = nil
	f.aliases = map[string]*Alias{}
	f.nodes = map[string]Node{}
	f.requests = map[reqKey]*requestEntry{}
	f.reqQueue, f.reqHead = nil, 0
	f.rootKeyCheck, f.rootKeyID = nil, ""
	f.rotateRootID, f.rotateRootCheck = "", nil
	f.accessKeys = map[string]*AccessKey{}
	f.modKeys, f.modOther = nil, 0
	f.gen++
}

// applyCtx is what a handler sees of the entry being applied.
type applyCtx struct {
	env     *eventsv1.Envelope
	name    string   // event name, for history
	t       int64    // clamped event time
	data    []byte   // raw entry bytes, for the history hash chain
	changed []string // key IDs the handler changed, for OnChange
	touched []string // keys whose reads this entry changes (modindex.go)
	// keysOnly: the event changes nothing but the keys it touches, so an
	// entry of it that touched none changed nothing a read observes
	// (RotateKeys whose every item was rejected).
	keysOnly bool
	// item, for one item of a batch event, is what the key's history entry
	// hashes in place of the entry's bytes (apply_rotation.go).
	item []byte
}

// strict reports whether the entry follows the rules of schema 2 on (see
// SchemaVersion); older entries keep the rules they were applied under.
func (c *applyCtx) strict() bool { return c.env.SchemaVersion >= schemaTrust }

type handler func(f *FSM, c *applyCtx) *Result

type registration struct {
	name string
	fn   handler
}

var (
	eventOneof = (&eventsv1.Envelope{}).ProtoReflect().Descriptor().Oneofs().ByName("event")
	handlers   = map[protoreflect.FieldNumber]registration{}
)

// register adds the handler for one event of the envelope's oneof. A duplicate
// or unknown registration is a programming error caught at start-up.
func register(field protoreflect.Name, fn handler) {
	fd := eventOneof.Fields().ByName(field)
	if fd == nil {
		panic(fmt.Sprintf("fsm: no event field %q in the envelope", field))
	}
	if _, dup := handlers[fd.Number()]; dup {
		panic(fmt.Sprintf("fsm: duplicate handler for %q", field))
	}
	handlers[fd.Number()] = registration{name: string(fd.Message().Name()), fn: fn}
}

// ApplyEntry applies one log entry at the given Raft index.
//
// An entry that cannot be decoded, or whose event this build does not know
// and which is not marked skippable, panics: the node stops loudly rather than
// diverge from its peers.
func (f *FSM) ApplyEntry(index uint64, data []byte) *Result {
	env, err := DecodeEntry(data)
	if err != nil {
		panic(fmt.Sprintf("fsm: log entry %d: %v", index, err))
	}
	res, changed := f.apply(index, env, data)
	res.Index = index
	if f.cfg.OnChange != nil {
		for _, id := range changed {
			f.cfg.OnChange(id)
		}
	}
	return res
}

func (f *FSM) apply(index uint64, env *eventsv1.Envelope, data []byte) (*Result, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = index
	f.lastSchema = env.SchemaVersion

	var reg registration
	known := false
	if fd := env.ProtoReflect().WhichOneof(eventOneof); fd != nil {
		reg, known = handlers[fd.Number()]
	}
	if !known || env.SchemaVersion > f.cfg.MaxSchema {
		if env.Skippable {
			return &Result{Skipped: true}, nil
		}
		panic(fmt.Sprintf("fsm: log entry %d holds an event this build does not know (schema %d); upgrade this node",
			index, env.SchemaVersion))
	}

	if r := checkEnvelope(env); r != nil {
		return failed("", r), nil // changes nothing, not even the clock
	}
	t := f.entryTime(env)
	// A repeated request returns its first result and changes nothing, not
	// even the clock; the same ID for another request (schema 2 on) is
	// refused and changes nothing either.
	rk := requestKey(env)
	if rk.id != "" {
		if e, ok := f.requests[rk]; ok && f.remembered(e, t, index) {
			if rk.scoped && !bytes.Equal(e.fingerprint, env.RequestFingerprint) {
				return failed("", reject(CodeIdempotentParameterMismatch,
					"request ID %q was already used for a different request", rk.id)), nil
			}
			return e.result.toResult(true), nil
		}
	}
	f.clock = t
	f.pruneRequests(t, index)

	f.gen++
	c := &applyCtx{env: env, name: reg.name, t: t, data: data}
	res := reg.fn(f, c)
	f.noteModified(index, c, res)
	if rk.id != "" {
		e := &requestEntry{key: rk, time: t, index: index, result: storeResult(res)}
		if rk.scoped && len(env.RequestFingerprint) > 0 {
			e.fingerprint = env.RequestFingerprint
		}
		f.requests[rk] = e
		f.reqQueue = append(f.reqQueue, e)
	}
	return res, c.changed
}

// checkEnvelope bounds what a schema-2 envelope brings into the state.
func checkEnvelope(env *eventsv1.Envelope) *Rejection {
	if env.GetRotateKeys() != nil {
		switch {
		case env.SchemaVersion < SchemaBatch:
			return reject(CodeValidation, "a RotateKeys entry needs schema %d", SchemaBatch)
		case env.RequestId != "" || len(env.RequestFingerprint) > 0:
			// A remembered result holds one outcome, not one per item; the
			// items' guards are what make a batch proposed twice apply once.
			return reject(CodeValidation, "a RotateKeys entry carries no request ID")
		}
	}
	if env.SchemaVersion < schemaTrust {
		return nil
	}
	switch {
	case len(env.RequestId) > maxRequestIDBytes:
		return reject(CodeValidation, "request ID of %d bytes is longer than %d", len(env.RequestId), maxRequestIDBytes)
	case len(env.Principal) > maxPrincipalBytes:
		return reject(CodeValidation, "principal of %d bytes is longer than %d", len(env.Principal), maxPrincipalBytes)
	case len(env.RequestFingerprint) > maxFingerprintBytes:
		return reject(CodeValidation, "request fingerprint of %d bytes is longer than %d", len(env.RequestFingerprint), maxFingerprintBytes)
	}
	return nil
}

// entryTime is the clamped time of an entry: never before the state clock,
// and (schema 2 on, once the clock is set) at most MaxClockStep after it.
func (f *FSM) entryTime(env *eventsv1.Envelope) int64 {
	t := max(env.TimeUnixNano, f.clock)
	step := int64(MaxClockStep)
	if env.SchemaVersion >= schemaTrust && f.clock != 0 && f.clock <= math.MaxInt64-step && t > f.clock+step {
		t = f.clock + step
	}
	return t
}

// pruneRequests forgets request IDs that are no longer remembered. Entry
// times are clamped and indexes grow, so the queue is in both orders.
func (f *FSM) pruneRequests(now int64, index uint64) {
	for f.reqHead < len(f.reqQueue) && !f.remembered(f.reqQueue[f.reqHead], now, index) {
		if e := f.reqQueue[f.reqHead]; f.requests[e.key] == e {
			delete(f.requests, e.key)
		}
		f.reqQueue[f.reqHead] = nil
		f.reqHead++
	}
	// Compact once the dead prefix dominates, so memory stays bounded.
	if f.reqHead > 1024 && f.reqHead*2 > len(f.reqQueue) {
		f.reqQueue = append([]*requestEntry(nil), f.reqQueue[f.reqHead:]...)
		f.reqHead = 0
	}
}

func storeResult(r *Result) storedResult {
	s := storedResult{keyID: r.KeyID, version: r.Version, deletionTime: r.DeletionTime, grantID: r.GrantID}
	if r.Err != nil {
		if rej, ok := r.Err.(*Rejection); ok {
			s.code, s.msg = rej.Code, rej.Msg
		} else {
			s.code, s.msg = CodeValidation, r.Err.Error()
		}
	}
	return s
}

func (s storedResult) toResult(dup bool) *Result {
	r := &Result{KeyID: s.keyID, Version: s.version, DeletionTime: s.deletionTime, GrantID: s.grantID, Duplicate: dup}
	if s.code != CodeOK {
		r.Err = &Rejection{Code: s.code, Msg: s.msg}
	}
	return r
}

// failed is the result of a rejected event.
func failed(keyID string, err *Rejection) *Result {
	return &Result{KeyID: keyID, Err: err}
}

// editKey returns a private copy of a key to change, or a rejection when the
// key does not exist or is deleted (deleted keys only keep their record).
func (f *FSM) editKey(id string) (*Key, *Rejection) {
	if id == "" {
		return nil, reject(CodeValidation, "key ID is required")
	}
	k, ok := f.keys[id]
	if !ok {
		return nil, reject(CodeNotFound, "key %s is not found", id)
	}
	if k.State == eventsv1.KeyState_KEY_STATE_DELETED {
		return nil, reject(CodeInvalidState, "key %s is deleted", id)
	}
	cp := *k
	return &cp, nil
}

// commit stores a changed key and appends the event to its history chain;
// from schema 2 on the history is then kept within MaxHistory entries.
func (f *FSM) commit(c *applyCtx, k *Key) *Result {
	prev := k.HistoryHead()
	h := sha256.New()
	h.Write(prev[:])
	if c.item != nil {
		h.Write(c.item)
	} else {
		h.Write(c.data)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	k.History = append(k.History, HistoryEntry{
		Type:      c.name,
		Time:      c.t,
		Principal: c.env.Principal,
		RequestID: c.env.RequestId,
		State:     k.State,
		Version:   k.CurrentVersion(),
		Hash:      sum,
	})
	if c.strict() && len(k.History) > MaxHistory {
		k.trimHistory()
	}
	if old, ok := f.keys[k.ID]; ok {
		k.seq = old.seq
		f.order[k.seq] = k
	} else {
		k.seq = len(f.order)
		f.order = append(f.order, k)
	}
	f.keys[k.ID] = k
	c.changed = append(c.changed, k.ID)
	c.touch(k.ID)
	return &Result{KeyID: k.ID, Version: k.CurrentVersion(), DeletionTime: k.DeletionAt}
}
