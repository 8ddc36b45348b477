package rotation

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

// The tests drive a real state machine through a fake one-node log: a
// proposal is encoded and applied at the next index, as Raft would, and a
// hook may intercept it to inject the failures of DESIGN §10.

const sec = int64(time.Second)

var t0 = time.Unix(1_700_000_000, 0)

// errAmbiguous stands in for raftnode.ErrAmbiguous.
var errAmbiguous = errors.New("test: outcome unknown")

// fakeClock is the injected clock; only tests move it.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeLog applies entries to the state machine one at a time, in index order.
type fakeLog struct {
	mu  sync.Mutex
	f   *fsm.FSM
	idx uint64
}

func (l *fakeLog) apply(env *eventsv1.Envelope) *fsm.Result {
	data, err := fsm.EncodeEntry(env)
	if err != nil {
		panic(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.idx++
	return l.f.ApplyEntry(l.idx, data)
}

// proposeHook intercepts a proposal; apply commits it to the log.
type proposeHook func(ctx context.Context, env *eventsv1.Envelope, apply func() *fsm.Result) (*fsm.Result, error)

// fakeProposer is a Proposer over a fakeLog that records what it was asked.
type fakeProposer struct {
	log *fakeLog

	mu      sync.Mutex
	hook    proposeHook
	barrier func(ctx context.Context) error
	ids     []string // request IDs, in call order

	calls     atomic.Int64
	barriers  atomic.Int64
	active    atomic.Int64
	maxActive atomic.Int64
}

func (p *fakeProposer) setHook(h proposeHook) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hook = h
}

func (p *fakeProposer) setBarrier(b func(ctx context.Context) error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.barrier = b
}

func (p *fakeProposer) requestIDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.ids...)
}

func (p *fakeProposer) Propose(ctx context.Context, env *eventsv1.Envelope) (*fsm.Result, error) {
	// Like raftnode: a context that already ended means surely not applied.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.calls.Add(1)
	n := p.active.Add(1)
	defer p.active.Add(-1)
	for {
		m := p.maxActive.Load()
		if n <= m || p.maxActive.CompareAndSwap(m, n) {
			break
		}
	}
	p.mu.Lock()
	p.ids = append(p.ids, env.RequestId)
	hook := p.hook
	p.mu.Unlock()
	apply := func() *fsm.Result { return p.log.apply(env) }
	if hook != nil {
		return hook(ctx, env, apply)
	}
	return apply(), nil
}

func (p *fakeProposer) Barrier(ctx context.Context) error {
	p.barriers.Add(1)
	p.mu.Lock()
	b := p.barrier
	p.mu.Unlock()
	if b != nil {
		return b(ctx)
	}
	return ctx.Err()
}

// fakeLeader has raftnode's semantics: one slot holding the latest state.
type fakeLeader struct{ ch chan bool }

func newFakeLeader(v bool) *fakeLeader {
	l := &fakeLeader{ch: make(chan bool, 1)}
	l.ch <- v
	return l
}

func (l *fakeLeader) SubscribeLeadership() (<-chan bool, func()) { return l.ch, func() {} }

func (l *fakeLeader) set(v bool) {
	select {
	case <-l.ch:
	default:
	}
	l.ch <- v
}

// countingState counts the scheduler's reads of the state.
type countingState struct {
	f        *fsm.FSM
	keyReads atomic.Int64
	scans    atomic.Int64
	ahead    atomic.Int64 // added to the state machine's clock (a state clock a skewed leader moved)
}

func (c *countingState) Key(id string) (*fsm.Key, bool) {
	c.keyReads.Add(1)
	return c.f.Key(id)
}

func (c *countingState) ForEachKey(fn func(*fsm.Key) bool) {
	c.scans.Add(1)
	c.f.ForEachKey(fn)
}

func (c *countingState) Clock() int64 { return c.f.Clock() + c.ahead.Load() }

// harness is one state machine, its log and clock, and any schedulers.
type harness struct {
	t     testing.TB
	clock *fakeClock
	log   *fakeLog
	f     *fsm.FSM
	state *countingState

	subMu sync.RWMutex
	subs  []func(string)
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{t: t, clock: &fakeClock{t: t0}}
	f, err := fsm.New(fsm.Config{OnChange: h.onChange})
	if err != nil {
		t.Fatal(err)
	}
	h.f = f
	h.log = &fakeLog{f: f}
	h.state = &countingState{f: f}
	return h
}

func (h *harness) onChange(id string) {
	h.subMu.RLock()
	defer h.subMu.RUnlock()
	for _, fn := range h.subs {
		fn(id)
	}
}

func (h *harness) now() int64 { return h.clock.Now().UnixNano() }

// advance moves the clock, and the state's clock with it as a leader's
// catch-up would: the state machine moves its clock at most
// fsm.MaxClockStep per entry, so without events in between a long advance
// would leave the state's clock behind, and every event then applied would
// be stamped in the past.
func (h *harness) advance(d time.Duration) {
	h.clock.Advance(d)
	now := h.now()
	for c := h.f.Clock(); c != 0 && now-c > int64(fsm.MaxClockStep)/2; c = h.f.Clock() {
		h.log.apply(&eventsv1.Envelope{TimeUnixNano: min(now, c+int64(fsm.MaxClockStep)),
			Event: &eventsv1.Envelope_RegisterNode{RegisterNode: &eventsv1.RegisterNode{NodeId: "clock"}}})
	}
}

// apply stamps env with the clock and applies it.
func (h *harness) apply(env *eventsv1.Envelope) *fsm.Result {
	if env.TimeUnixNano == 0 {
		env.TimeUnixNano = h.now()
	}
	return h.log.apply(env)
}

// ok applies an event that must succeed.
func (h *harness) ok(env *eventsv1.Envelope) *fsm.Result {
	h.t.Helper()
	r := h.apply(env)
	if r.Err != nil {
		h.t.Fatalf("%v: unexpected rejection: %v", env.Event, r.Err)
	}
	return r
}

func (h *harness) key(id string) *fsm.Key {
	h.t.Helper()
	k, ok := h.f.Key(id)
	if !ok {
		h.t.Fatalf("key %s missing", id)
	}
	return k
}

// node is one scheduler with its own proposer and leadership, as on one node.
type node struct {
	s    *Scheduler
	p    *fakeProposer
	lead *fakeLeader
}

// start makes a scheduler that leads from the start, runs it until the test
// ends, and waits until it is active.
func (h *harness) start(opts ...func(*Config)) *node {
	h.t.Helper()
	n := h.launch(&fakeProposer{log: h.log}, opts...)
	eventually(h.t, "scheduler active", n.s.Active)
	return n
}

// launch is start without the wait, with a proposer prepared by the caller.
func (h *harness) launch(p *fakeProposer, opts ...func(*Config)) *node {
	h.t.Helper()
	n := &node{p: p, lead: newFakeLeader(true)}
	logger := hclog.NewNullLogger()
	if testing.Verbose() {
		logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: os.Stderr})
	}
	cfg := Config{
		Proposer:   n.p,
		Leadership: n.lead,
		State:      h.state,
		NewMaterial: func(id string, v uint32) ([]byte, error) {
			return []byte(fmt.Sprintf("sealed(%s,v%d)", id, v)), nil
		},
		MayHaveApplied: func(err error) bool { return errors.Is(err, errAmbiguous) },
		Now:            h.clock.Now,
		Tick:           time.Millisecond,
		RetryBackoff:   10 * time.Second,
		MaxBackoff:     80 * time.Second,
		Logger:         logger,
	}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	n.s = s
	h.subMu.Lock()
	h.subs = append(h.subs, s.KeyChanged)
	h.subMu.Unlock()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("Run: %v", err)
		}
	})
	return n
}

// settle waits until a loop pass that began after the call has ended with
// nothing in flight: everything due by the current time has been done (or is
// backing off), and every change notification before the call was handled.
func (h *harness) settle(n *node) {
	h.t.Helper()
	after := n.s.passes.Load()
	eventually(h.t, "scheduler settled", func() bool { return n.s.Active() && n.s.idlePass.Load() > after })
}

// eventually polls cond until it holds, failing the test after a deadline.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// never polls cond for a while and fails the test if it ever holds. It is
// for checks that something does not happen, where no event marks the end.
func never(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			t.Fatalf("unexpected: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Event builders.

func createKey(id string) *eventsv1.Envelope {
	return &eventsv1.Envelope{Event: &eventsv1.Envelope_CreateKey{CreateKey: &eventsv1.CreateKey{
		KeyId: id, Origin: fsm.OriginGenerated, SealedMaterial: []byte("sealed(" + id + ",v1)")}}}
}

func createManaged(id string, periodSec int64) *eventsv1.Envelope {
	return &eventsv1.Envelope{Event: &eventsv1.Envelope_CreateKey{CreateKey: &eventsv1.CreateKey{
		KeyId: id, Origin: fsm.OriginService, SealedMaterial: []byte("sealed(" + id + ",v1)"),
		RotationPeriodSeconds: periodSec}}}
}

func createExternal(id string) *eventsv1.Envelope {
	return &eventsv1.Envelope{Event: &eventsv1.Envelope_CreateKey{CreateKey: &eventsv1.CreateKey{
		KeyId: id, Origin: fsm.OriginExternal}}}
}

func enableRot(id string, periodSec int64) *eventsv1.Envelope {
	return &eventsv1.Envelope{Event: &eventsv1.Envelope_EnableKeyRotation{EnableKeyRotation: &eventsv1.EnableKeyRotation{
		KeyId: id, RotationPeriodSeconds: periodSec}}}
}

func disableRot(id string) *eventsv1.Envelope {
	return &eventsv1.Envelope{Event: &eventsv1.Envelope_DisableKeyRotation{DisableKeyRotation: &eventsv1.DisableKeyRotation{KeyId: id}}}
}

func enableKey(id string) *eventsv1.Envelope {
	return &eventsv1.Envelope{Event: &eventsv1.Envelope_EnableKey{EnableKey: &eventsv1.EnableKey{KeyId: id}}}
}

func disableKey(id string) *eventsv1.Envelope {
	return &eventsv1.Envelope{Event: &eventsv1.Envelope_DisableKey{DisableKey: &eventsv1.DisableKey{KeyId: id}}}
}

func scheduleDeletion(id string, windowSec int64) *eventsv1.Envelope {
	return &eventsv1.Envelope{Event: &eventsv1.Envelope_ScheduleKeyDeletion{ScheduleKeyDeletion: &eventsv1.ScheduleKeyDeletion{
		KeyId: id, PendingWindowSeconds: windowSec}}}
}

func cancelDeletion(id string) *eventsv1.Envelope {
	return &eventsv1.Envelope{Event: &eventsv1.Envelope_CancelKeyDeletion{CancelKeyDeletion: &eventsv1.CancelKeyDeletion{KeyId: id}}}
}

func tagKey(id, k, v string) *eventsv1.Envelope {
	return &eventsv1.Envelope{Event: &eventsv1.Envelope_TagKey{TagKey: &eventsv1.TagKey{
		KeyId: id, Tags: []*eventsv1.Tag{{Key: k, Value: v}}}}}
}

func importParams(id string) *eventsv1.Envelope {
	return &eventsv1.Envelope{Event: &eventsv1.Envelope_CreateImportParameters{CreateImportParameters: &eventsv1.CreateImportParameters{
		KeyId: id, ImportTokenId: "tok-" + id, WrappingKeySpec: "RSA_2048", WrappingAlgorithm: "RSAES_OAEP_SHA_256",
		PublicKeyDer: []byte("pub"), SealedPrivateKey: []byte("sealed-priv"), ValidForSeconds: 86400}}}
}

// importMaterial imports version 1; validTo 0 means it does not expire.
func importMaterial(id string, validTo int64) *eventsv1.Envelope {
	model := eventsv1.ExpirationModel_EXPIRATION_MODEL_KEY_MATERIAL_DOES_NOT_EXPIRE
	if validTo != 0 {
		model = eventsv1.ExpirationModel_EXPIRATION_MODEL_KEY_MATERIAL_EXPIRES
	}
	return &eventsv1.Envelope{Event: &eventsv1.Envelope_ImportKeyMaterial{ImportKeyMaterial: &eventsv1.ImportKeyMaterial{
		KeyId: id, ImportTokenId: "tok-" + id, ImportType: eventsv1.ImportType_IMPORT_TYPE_EXISTING_KEY_MATERIAL,
		Version: 1, SealedMaterial: []byte("sealed(" + id + ",v1)"), MaterialFingerprint: []byte("fp-" + id),
		ExpirationModel: model, ValidToUnixNano: validTo}}}
}

// checkVersions asserts that key k has n versions numbered 1..n, the first
// INITIAL (or IMPORTED) and the rest AUTOMATIC.
func checkVersions(t testing.TB, k *fsm.Key, n int) {
	t.Helper()
	if len(k.Versions) != n {
		t.Fatalf("key %s has %d versions, want %d", k.ID, len(k.Versions), n)
	}
	for i, v := range k.Versions {
		if v.Number != uint32(i+1) {
			t.Fatalf("key %s: version %d numbered %d", k.ID, i+1, v.Number)
		}
		if i > 0 && v.Type != eventsv1.RotationType_ROTATION_TYPE_AUTOMATIC {
			t.Fatalf("key %s: version %d is %v, want AUTOMATIC", k.ID, v.Number, v.Type)
		}
	}
}

// countEvents counts a key's history entries of one event type.
func countEvents(k *fsm.Key, typ string) int {
	n := 0
	for _, e := range k.History {
		if e.Type == typ {
			n++
		}
	}
	return n
}
