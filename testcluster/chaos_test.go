package testcluster_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	"github.com/raftkms/raftkms/raftnode"
	"github.com/raftkms/raftkms/testcluster"
	"google.golang.org/protobuf/proto"
)

var seedFlag = flag.Uint64("seed", 0, "random seed for chaos tests (default: $RAFTKMS_SEED, else the clock)")

// chaosSeed picks the seed and prints it, so a failure can be replayed.
func chaosSeed(t *testing.T) uint64 {
	seed := *seedFlag
	if seed == 0 {
		if env := os.Getenv("RAFTKMS_SEED"); env != "" {
			v, err := strconv.ParseUint(env, 10, 64)
			if err != nil {
				t.Fatalf("RAFTKMS_SEED: %v", err)
			}
			seed = v
		}
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("chaos seed %d (replay with -seed=%d or RAFTKMS_SEED=%d)", seed, seed, seed)
	return seed
}

// acked is an event the cluster acknowledged: Propose returned a result
// without a rejection.
type acked struct {
	env *eventsv1.Envelope
	res *fsm.Result
}

// workload generates lifecycle events against the keys it has seen created
// and records what was acknowledged.
type workload struct {
	c *testcluster.Cluster

	mu      sync.Mutex
	keys    []string
	aliases []string
	acks    map[string]acked // by request ID
	refused map[string]error // request IDs reported as surely not applied, with the error

	proposed, rejected, ambiguous, notApplied, retriedOK, duplicates atomic.Int64
}

func (w *workload) randomKey(rng *rand.Rand) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.keys) == 0 {
		return ""
	}
	return w.keys[rng.IntN(len(w.keys))]
}

func (w *workload) randomAlias(rng *rand.Rand) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.aliases) == 0 {
		return ""
	}
	return w.aliases[rng.IntN(len(w.aliases))]
}

// currentVersion reads the key's version from the leader's state machine, as
// a real proposer would; it may be stale, and then the guard rejects.
func (w *workload) currentVersion(id string) uint32 {
	l := w.c.Leader()
	if l < 0 {
		l = 0
	}
	if k, ok := w.c.FSM(l).Key(id); ok {
		return k.CurrentVersion()
	}
	return 0
}

// next makes worker wk's seq-th event.
func (w *workload) next(rng *rand.Rand, wk, seq int) *eventsv1.Envelope {
	req := fmt.Sprintf("w%d-r%d", wk, seq)
	env := &eventsv1.Envelope{TimeUnixNano: time.Now().UnixNano(), RequestId: req, Principal: "chaos"}
	key := w.randomKey(rng)
	p := rng.IntN(100)
	if key == "" || p < 12 {
		id := fmt.Sprintf("w%d-k%d", wk, seq)
		ck := &eventsv1.CreateKey{KeyId: id, Origin: eventsv1.Origin_ORIGIN_GENERATED, SealedMaterial: []byte("sealed-" + req)}
		if rng.IntN(2) == 0 {
			ck.Tags = []*eventsv1.Tag{{Key: "team", Value: strconv.Itoa(wk)}}
		}
		env.Event = &eventsv1.Envelope_CreateKey{CreateKey: ck}
		return env
	}
	switch {
	case p < 22:
		env.Event = &eventsv1.Envelope_DisableKey{DisableKey: &eventsv1.DisableKey{KeyId: key}}
	case p < 34:
		env.Event = &eventsv1.Envelope_EnableKey{EnableKey: &eventsv1.EnableKey{KeyId: key}}
	case p < 56:
		env.Event = &eventsv1.Envelope_RotateKey{RotateKey: &eventsv1.RotateKey{
			KeyId: key, RotationType: eventsv1.RotationType_ROTATION_TYPE_ON_DEMAND,
			ExpectedCurrentVersion: w.currentVersion(key), SealedMaterial: []byte("sealed-" + req)}}
	case p < 60:
		env.Event = &eventsv1.Envelope_ScheduleKeyDeletion{ScheduleKeyDeletion: &eventsv1.ScheduleKeyDeletion{
			KeyId: key, PendingWindowSeconds: 7 * 86400}}
	case p < 66:
		env.Event = &eventsv1.Envelope_CancelKeyDeletion{CancelKeyDeletion: &eventsv1.CancelKeyDeletion{KeyId: key}}
	case p < 72:
		env.Event = &eventsv1.Envelope_EnableKeyRotation{EnableKeyRotation: &eventsv1.EnableKeyRotation{
			KeyId: key, RotationPeriodSeconds: int64(90+rng.IntN(300)) * 86400}}
	case p < 78:
		env.Event = &eventsv1.Envelope_CreateAlias{CreateAlias: &eventsv1.CreateAlias{
			AliasName: fmt.Sprintf("alias/w%d-%d", wk, seq), TargetKeyId: key}}
	case p < 82:
		env.Event = &eventsv1.Envelope_UpdateAlias{UpdateAlias: &eventsv1.UpdateAlias{
			AliasName: w.randomAlias(rng), TargetKeyId: key}}
	case p < 85:
		env.Event = &eventsv1.Envelope_DeleteAlias{DeleteAlias: &eventsv1.DeleteAlias{AliasName: w.randomAlias(rng)}}
	case p < 95:
		env.Event = &eventsv1.Envelope_TagKey{TagKey: &eventsv1.TagKey{KeyId: key,
			Tags: []*eventsv1.Tag{{Key: fmt.Sprintf("t%d", rng.IntN(5)), Value: req}}}}
	default:
		env.Event = &eventsv1.Envelope_UntagKey{UntagKey: &eventsv1.UntagKey{KeyId: key,
			TagKeys: []string{fmt.Sprintf("t%d", rng.IntN(5))}}}
	}
	return env
}

// propose resolves one event. An ambiguous error (or any error whose
// meaning is unclear, such as a timeout) is retried with the same envelope,
// and so the same request ID, until the cluster gives a result.
//
// With direct set, the worker talks to the leader itself, and an error that
// promises the entry was not applied (not leader, busy, shut down), unless an
// earlier attempt was ambiguous, is retried under a new request ID: if that promise were broken, the old request ID
// would show up in a history without having been acknowledged, and
// checkAcked fails. Otherwise it uses Cluster.Propose, which retries those
// errors itself with the same envelope.
func (w *workload) propose(ctx context.Context, env *eventsv1.Envelope, direct bool) (*eventsv1.Envelope, *fsm.Result, error) {
	var lastErr error
	inDoubt := false // an attempt under this request ID may have committed
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return env, nil, fmt.Errorf("%s unresolved after %d attempts: %v", env.RequestId, attempt, lastErr)
		}
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		var res *fsm.Result
		var err error
		if direct {
			res, err = w.proposeDirect(pctx, env)
		} else {
			res, err = w.c.Propose(pctx, env)
		}
		cancel()
		if err == nil {
			if attempt > 0 {
				w.retriedOK.Add(1)
			}
			if res.Duplicate {
				w.duplicates.Add(1)
			}
			return env, res, nil
		}
		lastErr = err
		refused := !errors.Is(err, raftnode.ErrAmbiguous) && (errors.Is(err, raftnode.ErrNotLeader) ||
			errors.Is(err, raftnode.ErrBusy) || errors.Is(err, raftnode.ErrShutdown))
		switch {
		case !refused:
			w.ambiguous.Add(1)
			inDoubt = true
		case !inDoubt:
			// A refusal says nothing about an earlier ambiguous attempt: only
			// while no attempt is in doubt may the event get a new request ID.
			w.notApplied.Add(1)
			w.mu.Lock()
			w.refused[env.RequestId] = err
			w.mu.Unlock()
			env = proto.Clone(env).(*eventsv1.Envelope)
			env.RequestId = fmt.Sprintf("%s-a%d", env.RequestId, attempt+1)
		}
		if refused {
			// Give the cluster a moment to elect a leader.
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// proposeDirect sends env to the node that looks like the leader now.
func (w *workload) proposeDirect(ctx context.Context, env *eventsv1.Envelope) (*fsm.Result, error) {
	l := w.c.Leader()
	if l < 0 {
		return nil, &raftnode.NotLeaderError{}
	}
	return w.c.Node(l).Propose(ctx, env)
}

func (w *workload) record(env *eventsv1.Envelope, res *fsm.Result) {
	w.proposed.Add(1)
	if res.Err != nil {
		w.rejected.Add(1)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.acks[env.RequestId] = acked{env, res}
	switch e := env.Event.(type) {
	case *eventsv1.Envelope_CreateKey:
		w.keys = append(w.keys, e.CreateKey.KeyId)
	case *eventsv1.Envelope_CreateAlias:
		w.aliases = append(w.aliases, e.CreateAlias.AliasName)
	}
}

// TestChaosLifecycle runs a mixed key lifecycle workload from several
// goroutines while the leader is killed and restarted four times and a
// follower is partitioned and healed. Every acknowledged event must be
// applied exactly once on every node, and the nodes must converge.
func TestChaosLifecycle(t *testing.T) {
	seed := chaosSeed(t)
	c := testcluster.New(t, 3, testcluster.WithSnapshots(512, 256))
	c.WaitForLeader(t)
	w := &workload{c: c, acks: map[string]acked{}, refused: map[string]error{}}

	const workers, minPerWorker = 8, 400
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stop atomic.Bool
	var wg sync.WaitGroup
	for wk := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(wk)))
			for seq := 0; seq < minPerWorker || !stop.Load(); seq++ {
				env, res, err := w.propose(ctx, w.next(rng, wk, seq), wk%2 == 1)
				if err != nil {
					t.Errorf("worker %d: %v", wk, err)
					return
				}
				w.record(env, res)
			}
		}()
	}

	// progress waits until the workload has resolved n more events.
	progress := func(what string, n int64) {
		t.Helper()
		target := w.proposed.Load() + n
		deadline := time.Now().Add(testcluster.WaitTimeout)
		for w.proposed.Load() < target {
			if time.Now().After(deadline) || ctx.Err() != nil {
				t.Fatalf("no progress %s: %d of %d events resolved", what, w.proposed.Load(), target)
			}
			time.Sleep(5 * time.Millisecond) // polling with a deadline
		}
	}
	chaos := rand.New(rand.NewPCG(seed, 1<<32))
	for round := range 4 {
		progress("before a kill", 100+chaos.Int64N(150))
		l := c.WaitForLeader(t)
		c.Kill(l)
		t.Logf("round %d: killed leader node %d at %d events", round, l, w.proposed.Load())
		progress("with the leader dead", 100+chaos.Int64N(150))
		c.Restart(l)
		t.Logf("round %d: restarted node %d", round, l)
		if round == 1 {
			progress("before a partition", 100)
			l := c.WaitForLeader(t)
			f := (l + 1 + chaos.IntN(2)) % 3
			c.Isolate(f)
			t.Logf("isolated follower node %d at %d events", f, w.proposed.Load())
			progress("with a follower isolated", 200+chaos.Int64N(100))
			c.Heal()
			t.Logf("healed at %d events", w.proposed.Load())
		}
	}
	progress("after the chaos", 100)
	stop.Store(true)
	wg.Wait()
	if t.Failed() {
		return
	}
	c.WaitConverged(t)
	t.Logf("%d events: %d acknowledged, %d rejected; attempts: %d ambiguous, %d surely not applied; "+
		"%d resolved on retry, %d duplicates", w.proposed.Load(), len(w.acks), w.rejected.Load(),
		w.ambiguous.Load(), w.notApplied.Load(), w.retriedOK.Load(), w.duplicates.Load())
	if len(w.acks) < 1000 {
		t.Fatalf("only %d events acknowledged; the workload is too small to mean much", len(w.acks))
	}
	for i := range c.N() {
		checkAcked(t, i, c.FSM(i), w.acks, w.refused)
	}
}

// checkAcked verifies node i's state machine against the acknowledged
// events: created keys and rotated versions exist with the proposed
// material, and the keys' histories hold exactly the acknowledged request
// IDs, each once (so retried requests applied once, and nothing reported as
// failed was applied).
func checkAcked(t *testing.T, i int, f *fsm.FSM, acks map[string]acked, refused map[string]error) {
	t.Helper()
	for req, a := range acks {
		switch e := a.env.Event.(type) {
		case *eventsv1.Envelope_CreateKey:
			k, ok := f.Key(e.CreateKey.KeyId)
			if !ok {
				t.Fatalf("node %d: acknowledged key %s (%s) is missing", i, e.CreateKey.KeyId, req)
			}
			if v := k.Version(1); v == nil || string(v.Sealed) != string(e.CreateKey.SealedMaterial) {
				t.Fatalf("node %d: key %s version 1 is not the created material", i, k.ID)
			}
		case *eventsv1.Envelope_RotateKey:
			k, ok := f.Key(e.RotateKey.KeyId)
			if !ok {
				t.Fatalf("node %d: rotated key %s is missing", i, e.RotateKey.KeyId)
			}
			v := k.Version(a.res.Version)
			if a.res.Version != e.RotateKey.ExpectedCurrentVersion+1 || v == nil ||
				string(v.Sealed) != string(e.RotateKey.SealedMaterial) ||
				v.Type != eventsv1.RotationType_ROTATION_TYPE_ON_DEMAND {
				t.Fatalf("node %d: acknowledged rotation %s of key %s to version %d is not there", i, req, k.ID, a.res.Version)
			}
		}
	}
	seen := map[string]int{}
	f.ForEachKey(func(k *fsm.Key) bool {
		for _, h := range k.History {
			seen[h.RequestID]++
		}
		return true
	})
	for req, n := range seen {
		if n != 1 {
			t.Fatalf("node %d: request %s applied %d times", i, req, n)
		}
		if _, ok := acks[req]; !ok {
			t.Fatalf("node %d: request %s was applied but never acknowledged (refused with: %v)", i, req, refused[req])
		}
	}
	for req := range acks {
		if seen[req] != 1 {
			t.Fatalf("node %d: acknowledged request %s is not in any key's history", i, req)
		}
	}
}
