package chaos

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkms/raftkms/client"
	"github.com/raftkms/raftkms/keycrypto"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/rpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Mix weighs the operations a worker picks.
type Mix map[Kind]int

// DefaultMix keeps keys moving through every state while most calls use
// them, so that rotations, disables and crypto overlap all the time. A key
// is not pending deletion about c/(s+c) of the time and, of that, enabled
// about e/(e+d) of it: here roughly 85% and 65%.
var DefaultMix = Mix{
	OpEncrypt: 22, OpDecrypt: 14, OpDescribe: 12, OpRotate: 18, OpDisable: 8, OpEnable: 16,
	OpSchedule: 1, OpCancel: 6, OpCreate: 4,
}

// Config shapes a workload. Zero fields take the defaults.
type Config struct {
	Workers        int           // clients running operations (default 6)
	Probes         int           // extra clients that only talk to the probe targets, while there are any
	Keys           int           // keys created before the faults start (default 8)
	MaxKeys        int           // creates stop at this many keys (default 2×Keys)
	AutoKeys       int           // of the first keys, how many get automatic rotation
	RotationPeriod time.Duration // their period (default 2 s; the cluster's minimum must allow it)
	Mix            Mix           // operation weights (default DefaultMix)
	ProbeMix       Mix           // the probes' operation weights (default Mix)
	Pace           time.Duration // pause between one worker's operations (default 5 ms)
	AttemptTimeout time.Duration // bound of one try (default 2 s)
	// OpBudget is how long a write is retried under its request ID before
	// its outcome is recorded as unknown (default 10 s).
	OpBudget time.Duration
	// ReadBudget is how long a read is retried before it is dropped: a
	// read that never answered says nothing (default 3 s).
	ReadBudget time.Duration
	// UseClient sends every call through the client library (all
	// endpoints, leader hints, its own retries under one request ID)
	// instead of to one chosen node per attempt.
	UseClient bool
}

func (c Config) withDefaults() Config {
	if c.Workers == 0 {
		c.Workers = 6
	}
	if c.Keys == 0 {
		c.Keys = 8
	}
	if c.MaxKeys == 0 {
		c.MaxKeys = 2 * c.Keys
	}
	if c.RotationPeriod == 0 {
		c.RotationPeriod = 2 * time.Second
	}
	if c.Mix == nil {
		c.Mix = DefaultMix
	}
	if c.ProbeMix == nil {
		c.ProbeMix = c.Mix
	}
	if c.Pace == 0 {
		c.Pace = 5 * time.Millisecond
	}
	if c.AttemptTimeout == 0 {
		c.AttemptTimeout = 2 * time.Second
	}
	if c.OpBudget == 0 {
		c.OpBudget = 10 * time.Second
	}
	if c.ReadBudget == 0 {
		c.ReadBudget = 3 * time.Second
	}
	return c
}

// Sealed is a ciphertext made during the run, with what it must decrypt to.
type Sealed struct {
	Key       string
	Version   uint32
	Blob      []byte
	Plaintext string
}

// keyInfo is one key of the workload.
type keyInfo struct {
	id    string
	auto  bool
	blobs []Sealed
}

// Attempt is one try of an operation on one node, for scenario checks.
type Attempt struct {
	Node       int // -1 when the client library chose
	Kind       Kind
	Start, End int64 // recorder time
	Outcome    Outcome
}

// Workload runs client operations against a cluster and records them.
type Workload struct {
	cfg  Config
	rec  *Recorder
	seed uint64

	// OnAttempt, if set before Start, sees every try.
	OnAttempt func(Attempt)

	connMu sync.Mutex
	addrs  []string // by node index
	conns  map[string]*grpc.ClientConn
	libs   []*client.Client // one per worker in UseClient mode

	targets atomic.Pointer[[]int] // nodes normal workers may call
	probes  atomic.Pointer[[]int] // nodes probe workers call

	mu          sync.Mutex
	keys        []*keyInfo
	byID        map[string]*keyInfo
	creating    int             // creates in flight
	lostCreates map[string]bool // request IDs of creates whose outcome stayed unknown

	flightMu sync.Mutex
	inFlight map[int]int // node -> write attempts on it now

	stop     atomic.Bool
	wg       sync.WaitGroup
	resolved atomic.Int64 // logical operations finished (recorded or dropped)
}

// NewWorkload prepares a workload over the nodes listening on addrs (by
// node index). Every node is a target until SetTargets says otherwise.
func NewWorkload(rec *Recorder, seed uint64, addrs []string, cfg Config) (*Workload, error) {
	w := &Workload{
		cfg: cfg.withDefaults(), rec: rec, seed: seed,
		conns: map[string]*grpc.ClientConn{}, byID: map[string]*keyInfo{}, lostCreates: map[string]bool{},
		inFlight: map[int]int{},
	}
	all := make([]int, len(addrs))
	for i, a := range addrs {
		w.SetAddr(i, a)
		all[i] = i
	}
	w.SetTargets(all)
	w.SetProbeTargets(nil)
	if w.cfg.UseClient {
		for range w.cfg.Workers + w.cfg.Probes + 1 {
			lib, err := client.New(client.Config{
				Endpoints: addrs, AttemptTimeout: w.cfg.AttemptTimeout, MaxAttempts: 8,
				BaseBackoff: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
			})
			if err != nil {
				w.Close()
				return nil, err
			}
			w.libs = append(w.libs, lib)
		}
	}
	return w, nil
}

// Close releases the workload's connections.
func (w *Workload) Close() {
	w.connMu.Lock()
	defer w.connMu.Unlock()
	for _, cc := range w.conns {
		cc.Close()
	}
	clear(w.conns)
	for _, l := range w.libs {
		l.Close()
	}
	w.libs = nil
}

// SetAddr tells the workload where node i listens (for nodes added later).
func (w *Workload) SetAddr(i int, addr string) {
	w.connMu.Lock()
	defer w.connMu.Unlock()
	for len(w.addrs) <= i {
		w.addrs = append(w.addrs, "")
	}
	w.addrs[i] = addr
}

// SetTargets sets the nodes that normal workers call (for example the
// majority side of a partition, or the live members).
func (w *Workload) SetTargets(nodes []int) {
	cp := append([]int(nil), nodes...)
	w.targets.Store(&cp)
}

// SetProbeTargets sets the nodes that probe workers call; with none, the
// probes idle.
func (w *Workload) SetProbeTargets(nodes []int) {
	cp := append([]int(nil), nodes...)
	w.probes.Store(&cp)
}

// WritesInFlight counts the write attempts under way now, on any node.
func (w *Workload) WritesInFlight() int {
	w.flightMu.Lock()
	defer w.flightMu.Unlock()
	n := 0
	for _, c := range w.inFlight {
		n += c
	}
	return n
}

func (w *Workload) flight(node int, in Input, d int) {
	if !in.Kind.Mutates() {
		return
	}
	w.flightMu.Lock()
	w.inFlight[node] += d
	w.flightMu.Unlock()
}

// Resolved counts the logical operations finished so far.
func (w *Workload) Resolved() int64 { return w.resolved.Load() }

// Keys returns the IDs of the workload's keys.
func (w *Workload) Keys() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, len(w.keys))
	for i, k := range w.keys {
		out[i] = k.id
	}
	return out
}

// AutoKeys returns the IDs of the keys with automatic rotation.
func (w *Workload) AutoKeys() map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]bool{}
	for _, k := range w.keys {
		if k.auto {
			out[k.id] = true
		}
	}
	return out
}

// Ciphertexts returns every ciphertext made during the run.
func (w *Workload) Ciphertexts() []Sealed {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Sealed
	for _, k := range w.keys {
		out = append(out, k.blobs...)
	}
	return out
}

// LostCreates are the request IDs of creates whose outcome stayed unknown:
// each may have made a key the workload never learned about.
func (w *Workload) LostCreates() map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]bool{}
	for id := range w.lostCreates {
		out[id] = true
	}
	return out
}

// lane numbers: workers, then probes, then the harness's own calls.
func (w *Workload) setupLane() int { return w.cfg.Workers + w.cfg.Probes }

// Setup creates the initial keys and turns on automatic rotation for the
// first AutoKeys of them, as recorded operations.
func (w *Workload) Setup(t testing.TB) {
	t.Helper()
	rng := mrand.New(mrand.NewPCG(w.seed, 1<<40))
	lane := w.setupLane()
	for i := range w.cfg.Keys {
		op := w.run(lane, false, rng, Input{Kind: OpCreate}, nil)
		if op.Out.Outcome != OK {
			t.Fatalf("chaos: creating key %d: %s (%s)", i, describeOp(op.In, op.Out), op.LastErr)
		}
	}
	for _, id := range w.Keys()[:w.cfg.AutoKeys] {
		op := w.run(lane, false, rng, Input{Kind: OpEnableRotation, Key: id}, nil)
		if op.Out.Outcome != OK {
			t.Fatalf("chaos: enabling rotation of %s: %s (%s)", id, describeOp(op.In, op.Out), op.LastErr)
		}
	}
}

// Start runs the workers until Stop.
func (w *Workload) Start() {
	for k := range w.cfg.Workers + w.cfg.Probes {
		w.wg.Add(1)
		go w.worker(k, k >= w.cfg.Workers)
	}
}

// Stop tells the workers to start no new operation. Wait waits for the
// ones in flight, which keep retrying (within their budget) meanwhile.
func (w *Workload) Stop() { w.stop.Store(true) }

// Wait waits until every worker has finished.
func (w *Workload) Wait() { w.wg.Wait() }

func (w *Workload) worker(k int, probe bool) {
	defer w.wg.Done()
	rng := mrand.New(mrand.NewPCG(w.seed, uint64(k)+1))
	mix := w.cfg.Mix
	if probe {
		mix = w.cfg.ProbeMix
	}
	kinds, total := mixTable(mix)
	for !w.stop.Load() {
		if len(w.targetsFor(probe)) == 0 || (probe && len(*w.probes.Load()) == 0) {
			time.Sleep(w.cfg.Pace) // idle until there is somewhere to go
			continue
		}
		in, blob := w.pick(rng, mix, kinds, total)
		w.run(k, probe, rng, in, blob)
		time.Sleep(w.cfg.Pace) // pacing of the load, not a wait
	}
}

func mixTable(mix Mix) ([]Kind, int) {
	var kinds []Kind
	total := 0
	for k, n := range mix {
		if n > 0 {
			kinds = append(kinds, k)
			total += n
		}
	}
	sort.Slice(kinds, func(i, j int) bool { return kinds[i] < kinds[j] })
	return kinds, total
}

// pick chooses the next operation and its key (and ciphertext, for a
// decrypt).
func (w *Workload) pick(rng *mrand.Rand, mix Mix, kinds []Kind, total int) (Input, *Sealed) {
	for {
		n := rng.IntN(total)
		var kind Kind
		for _, k := range kinds {
			if n -= mix[k]; n < 0 {
				kind = k
				break
			}
		}
		w.mu.Lock()
		if kind == OpCreate {
			if len(w.keys)+w.creating >= w.cfg.MaxKeys {
				w.mu.Unlock()
				continue
			}
			w.creating++
			w.mu.Unlock()
			return Input{Kind: OpCreate}, nil
		}
		if len(w.keys) == 0 {
			w.mu.Unlock()
			continue
		}
		k := w.keys[rng.IntN(len(w.keys))]
		if kind == OpDecrypt {
			if len(k.blobs) == 0 {
				w.mu.Unlock()
				continue
			}
			b := k.blobs[rng.IntN(len(k.blobs))]
			w.mu.Unlock()
			return Input{Kind: OpDecrypt, Key: k.id, Version: b.Version}, &b
		}
		w.mu.Unlock()
		return Input{Kind: kind, Key: k.id}, nil
	}
}

func (w *Workload) targetsFor(probe bool) []int {
	if probe {
		if p := *w.probes.Load(); len(p) > 0 {
			return p
		}
	}
	return *w.targets.Load()
}

func newRequestID() string {
	var b [12]byte
	rand.Read(b[:])
	return "chaos-" + hex.EncodeToString(b[:])
}

// run performs one logical operation: tries until the cluster gives a
// definite answer, retrying under the same request ID on any target node
// (so a write applies at most once), within the operation's budget. It
// records the operation and returns it.
func (w *Workload) run(lane int, probe bool, rng *mrand.Rand, in Input, blob *Sealed) Op {
	op := Op{Client: lane, In: in, Node: -1, RequestID: newRequestID()}
	plaintext := op.RequestID
	budget := w.cfg.ReadBudget
	if in.Kind.Mutates() {
		budget = w.cfg.OpBudget
	}
	deadline := time.Now().Add(budget)
	op.Call = w.rec.Now()
	var keyID string
	for {
		targets := w.targetsFor(probe)
		node := -1
		if !w.cfg.UseClient && len(targets) > 0 {
			node = targets[rng.IntN(len(targets))]
		}
		start := w.rec.Now()
		var out Output
		var err error
		if w.cfg.UseClient || node >= 0 {
			w.flight(node, in, 1)
			out, keyID, blob, err = w.attempt(lane, node, op.RequestID, in, plaintext, blob)
			w.flight(node, in, -1)
		} else {
			out, err = Output{Outcome: Unknown}, fmt.Errorf("no target node")
		}
		op.Attempts++
		if err != nil {
			op.LastErr = err.Error()
		}
		if w.OnAttempt != nil && (node >= 0 || w.cfg.UseClient) {
			w.OnAttempt(Attempt{Node: node, Kind: in.Kind, Start: start, End: w.rec.Now(), Outcome: out.Outcome})
		}
		if out.Outcome != Unknown {
			op.Out, op.Return, op.Node = out, w.rec.Now(), node
			break
		}
		if time.Now().After(deadline) {
			op.Out, op.Return = Output{Outcome: Unknown}, Never
			break
		}
		time.Sleep(time.Duration(10+rng.IntN(40)) * time.Millisecond) // backoff before the retry
	}
	w.finish(&op, keyID, blob)
	return op
}

// finish records an operation and updates the key pool.
func (w *Workload) finish(op *Op, keyID string, blob *Sealed) {
	defer w.resolved.Add(1)
	w.mu.Lock()
	defer w.mu.Unlock()
	switch op.In.Kind {
	case OpCreate:
		w.creating = max(0, w.creating-1)
		switch op.Out.Outcome {
		case OK:
			op.In.Key = keyID
			k := &keyInfo{id: keyID}
			w.keys = append(w.keys, k)
			w.byID[keyID] = k
		case Unknown:
			w.lostCreates[op.RequestID] = true
			return // no key ID: nothing to check it against
		default:
			return
		}
	case OpEnableRotation:
		if op.Out.Outcome == OK || op.Out.Outcome == Unknown {
			w.byID[op.In.Key].auto = true
		}
	case OpEncrypt:
		if op.Out.Outcome == OK && blob != nil {
			k := w.byID[op.In.Key]
			k.blobs = append(k.blobs, *blob)
		}
	}
	if op.Out.Outcome == Unknown && !op.In.Kind.Mutates() {
		return // a read that never answered says nothing
	}
	w.rec.Add(*op)
}

// conn is a plain connection to node i (no client-side retries: run does
// them, so it knows every attempt).
func (w *Workload) conn(i int) (*grpc.ClientConn, error) {
	w.connMu.Lock()
	defer w.connMu.Unlock()
	addr := w.addrs[i]
	if cc, ok := w.conns[addr]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	w.conns[addr] = cc
	return cc, nil
}

// attempt makes one try of an operation on node i (or through the client
// library). It returns the outcome, the key ID of a create and the
// ciphertext of an encrypt.
func (w *Workload) attempt(lane, node int, reqID string, in Input, plaintext string, blob *Sealed) (Output, string, *Sealed, error) {
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.AttemptTimeout)
	defer cancel()
	var kms kmsv1.KeyManagementServiceClient
	if w.cfg.UseClient {
		w.connMu.Lock()
		lib := w.libs[lane%len(w.libs)]
		w.connMu.Unlock()
		// The library retries on its own, within the caller's deadline.
		ctx, cancel = context.WithTimeout(client.WithRequestID(context.Background(), reqID), 4*w.cfg.AttemptTimeout)
		defer cancel()
		kms = lib.KMS()
	} else {
		cc, err := w.conn(node)
		if err != nil {
			return Output{Outcome: Unknown}, "", blob, err
		}
		kms = kmsv1.NewKeyManagementServiceClient(cc)
		ctx = metadata.AppendToOutgoingContext(ctx, rpc.MDRequestID, reqID)
	}
	ec := map[string]string{"key": in.Key}
	var err error
	out := Output{Outcome: OK}
	var keyID string
	switch in.Kind {
	case OpCreate:
		var resp *kmsv1.CreateKeyResponse
		if resp, err = kms.CreateKey(ctx, &kmsv1.CreateKeyRequest{Description: "chaos"}); err == nil {
			keyID = resp.KeyMetadata.KeyId
		}
	case OpEnable:
		_, err = kms.EnableKey(ctx, &kmsv1.EnableKeyRequest{KeyId: in.Key})
	case OpDisable:
		_, err = kms.DisableKey(ctx, &kmsv1.DisableKeyRequest{KeyId: in.Key})
	case OpSchedule:
		// The longest window: no deletion completes during a run.
		_, err = kms.ScheduleKeyDeletion(ctx, &kmsv1.ScheduleKeyDeletionRequest{KeyId: in.Key, PendingWindowInDays: 30})
	case OpCancel:
		_, err = kms.CancelKeyDeletion(ctx, &kmsv1.CancelKeyDeletionRequest{KeyId: in.Key})
	case OpEnableRotation:
		_, err = kms.EnableKeyRotation(ctx, &kmsv1.EnableKeyRotationRequest{KeyId: in.Key,
			RotationPeriodSeconds: int64(w.cfg.RotationPeriod / time.Second)})
	case OpRotate:
		var resp *kmsv1.RotateKeyOnDemandResponse
		if resp, err = kms.RotateKeyOnDemand(ctx, &kmsv1.RotateKeyOnDemandRequest{KeyId: in.Key}); err == nil {
			out.Version = resp.KeyVersion
		}
	case OpEncrypt:
		var resp *kmsv1.EncryptResponse
		if resp, err = kms.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: in.Key, Plaintext: []byte(plaintext), EncryptionContext: ec}); err == nil {
			hdr, _, perr := keycrypto.ParseCiphertext(resp.CiphertextBlob)
			if perr != nil || hdr.KeyID != in.Key {
				return Output{Outcome: Corrupt}, "", blob, fmt.Errorf("encrypt returned a bad blob: %v (key %q)", perr, hdr.KeyID)
			}
			out.Version = hdr.Version
			blob = &Sealed{Key: in.Key, Version: hdr.Version, Blob: resp.CiphertextBlob, Plaintext: plaintext}
		}
	case OpDecrypt:
		var resp *kmsv1.DecryptResponse
		if resp, err = kms.Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: blob.Blob, EncryptionContext: ec}); err == nil &&
			string(resp.Plaintext) != blob.Plaintext {
			return Output{Outcome: Corrupt}, "", blob, fmt.Errorf("decrypt returned the wrong plaintext")
		}
	case OpDescribe:
		var resp *kmsv1.DescribeKeyResponse
		if resp, err = kms.DescribeKey(ctx, &kmsv1.DescribeKeyRequest{KeyId: in.Key}); err == nil {
			out.State, out.Version = resp.KeyMetadata.KeyState, resp.KeyMetadata.CurrentKeyVersion
		}
	}
	if err != nil {
		o, exc := classify(err)
		return Output{Outcome: o, Exception: exc}, "", blob, err
	}
	return out, keyID, blob, nil
}

// classify turns a call's error into an outcome. Only answers that come
// from the state of the keys are definite; Unavailable (no leader, not the
// leader, outcome unknown), deadlines, cancellations, dropped connections
// and internal errors say nothing about whether a write applied.
func classify(err error) (Outcome, string) {
	switch status.Code(err) {
	case codes.OK:
		return OK, ""
	case codes.NotFound, codes.FailedPrecondition, codes.InvalidArgument, codes.AlreadyExists,
		codes.ResourceExhausted, codes.Aborted, codes.PermissionDenied, codes.Unauthenticated,
		codes.Unimplemented, codes.OutOfRange:
		return Rejected, client.ExceptionName(err)
	}
	return Unknown, ""
}

// Describe reads every key's state once more through the API, recorded like
// any operation: the history then ends with the final state, which the
// checker must explain too.
func (w *Workload) Describe(t testing.TB) {
	t.Helper()
	rng := mrand.New(mrand.NewPCG(w.seed, 1<<41))
	for _, id := range w.Keys() {
		var op Op
		for try := 0; try < 5; try++ {
			if op = w.run(w.setupLane(), false, rng, Input{Kind: OpDescribe, Key: id}, nil); op.Out.Outcome != Unknown {
				break
			}
		}
		if op.Out.Outcome != OK {
			t.Errorf("chaos: final DescribeKey %s: %s (%s)", id, describeOp(op.In, op.Out), op.LastErr)
		}
	}
}
