package rotation

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Rotation storms. When many keys fall due at once (a mass enable, a restore,
// a yearly schedule), one entry per rotation makes the log, not the crypto,
// the limit, and every entry costs every node a round of replication, a
// disk write and an apply. The scheduler then proposes due rotations in
// batches (RotateKeys), each item still guarded by its key's expected version
// and rejected on its own, and paces them with a token bucket so client
// traffic keeps most of the cluster.

// batchRetryAfter is how long the scheduler proposes single rotations after
// the cluster refused a batch as unknown to one of its members (a rolling
// upgrade in progress), before it tries a batch again.
const batchRetryAfter = time.Minute

// entryOverhead is room left in a RotateKeys entry for the envelope around
// its items (schema, time, principal, the event's own tag and length).
const entryOverhead = 1024

// batching reports whether due rotations may go out as RotateKeys entries
// now: batches are on, and every member knows the event as far as the
// proposer can tell (raftnode's ProposeSchema) and as far as the last refusal
// said.
func (t *term) batching() bool {
	if t.s.cfg.BatchSize < 2 || time.Now().UnixNano() < t.s.noBatchUntil.Load() {
		return false
	}
	if p, ok := t.s.cfg.Proposer.(interface{ ProposeSchema() uint32 }); ok && p.ProposeSchema() < fsm.SchemaBatch {
		return false
	}
	return true
}

// startBatch hands a batch of rotations to one worker: one proposal.
func (t *term) startBatch(group []pick) {
	for _, p := range group {
		t.inflight[p.it.keyID] = true
	}
	t.proposals++
	t.s.count(func(st *Stats) { st.InFlight += len(group) })
	go t.runBatch(group)
}

// runBatch makes the batch's material, proposes it as one entry and reports
// one outcome per rotation on done, as a worker of its own would.
func (t *term) runBatch(group []pick) {
	outs := make([]outcome, len(group))
	for i, p := range group {
		outs[i] = outcome{it: p.it, guard: p.guard, hist: len(p.k.History), batch: true}
	}
	defer func() { t.done <- outs }()
	material := t.seal(group, outs)

	rk := &eventsv1.RotateKeys{Rotations: make([]*eventsv1.RotateKey, 0, len(group))}
	var idx []int // rk.Rotations[j] is group[idx[j]]
	size := entryOverhead
	for i, p := range group {
		if outs[i].materialErr != nil {
			continue
		}
		item := &eventsv1.RotateKey{
			KeyId:                  p.k.ID,
			RotationType:           eventsv1.RotationType_ROTATION_TYPE_AUTOMATIC,
			ExpectedCurrentVersion: uint32(p.guard),
			SealedMaterial:         material[i],
		}
		n := proto.Size(item)
		n += protowire.SizeTag(1) + protowire.SizeVarint(uint64(n))
		if size+n > fsm.MaxRotateBatchBytes {
			outs[i].deferred = true // the next batch takes it
			continue
		}
		size += n
		rk.Rotations = append(rk.Rotations, item)
		idx = append(idx, i)
	}
	if len(idx) == 0 {
		return
	}
	// No request ID: a result remembered for it could not say which items
	// applied, and each item's guard makes a batch proposed twice (an old
	// and a new leader, or a retry after an ambiguous error) apply once.
	env := &eventsv1.Envelope{
		SchemaVersion: fsm.SchemaVersion,
		TimeUnixNano:  t.s.cfg.Now().UnixNano(),
		Principal:     Principal,
		Event:         &eventsv1.Envelope_RotateKeys{RotateKeys: rk},
	}
	ctx, cancel := context.WithTimeout(t.ctx, t.s.cfg.ProposeTimeout)
	defer cancel()
	t.s.count(func(st *Stats) { st.Proposed += uint64(len(idx)); st.Batches++ })
	start := time.Now()
	res, err := t.s.cfg.Proposer.Propose(ctx, env)
	switch {
	case err == nil && res == nil:
		err = errors.New("rotation: Propose returned neither a result nor an error")
	case err == nil && res.Err == nil && len(res.Items) != len(idx):
		// It did apply, but what: re-read every key, as after any doubt.
		err = fmt.Errorf("rotation: a batch of %d rotations answered with %d results", len(idx), len(res.Items))
	}
	applied := 0
	switch {
	case err != nil:
		for _, i := range idx {
			outs[i].err = err
		}
	case res.Err != nil && rejectionCode(res.Err) == fsm.CodeUnsupported:
		// A member does not know RotateKeys yet (raftnode's schema gate):
		// nothing was proposed. One entry per rotation until it may.
		t.s.noBatchUntil.Store(time.Now().Add(batchRetryAfter).UnixNano())
		t.s.count(func(st *Stats) { st.BatchFallbacks++ })
		for _, i := range idx {
			outs[i].deferred = true
		}
		t.s.log.Info("the cluster cannot take batched rotations yet; proposing them one by one", "reason", res.Err)
		return
	case res.Err != nil:
		// Refused as a whole: a definite rejection of every rotation in it.
		for _, i := range idx {
			outs[i].res = &fsm.Result{Index: res.Index, KeyID: group[i].k.ID, Err: res.Err}
		}
	default:
		for j, i := range idx {
			r := res.Items[j]
			outs[i].res = &fsm.Result{Index: res.Index, KeyID: r.KeyID, Version: r.Version, Err: r.Err}
			if r.Err == nil {
				applied++
			}
		}
	}
	if err != nil {
		t.s.log.Warn("batch of rotations failed; will re-read the keys and retry", "rotations", len(idx), "error", err,
			"may_have_applied", t.s.cfg.MayHaveApplied(err))
		return
	}
	t.s.log.Info("batch of rotations applied", "rotations", len(idx), "applied", applied, "rejected", len(idx)-applied,
		"index", res.Index, "took", time.Since(start).Round(time.Microsecond))
}

// seal makes the new material of every rotation of a batch, SealWorkers at a
// time; a failure is recorded on that rotation's outcome alone.
func (t *term) seal(group []pick, outs []outcome) [][]byte {
	material := make([][]byte, len(group))
	one := func(i int) {
		p := group[i]
		m, err := t.s.cfg.NewMaterial(p.k.ID, uint32(p.guard)+1)
		if err == nil && len(m) == 0 {
			err = errors.New("rotation: NewMaterial returned no material")
		}
		material[i], outs[i].materialErr = m, err
	}
	// Below a few dozen, a goroutine costs more than it saves.
	workers := min(t.s.cfg.SealWorkers, (len(group)+31)/32)
	if workers <= 1 {
		for i := range group {
			one(i)
		}
		return material
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(group) {
					return
				}
				one(i)
			}
		}()
	}
	wg.Wait()
	return material
}

// pacer is the rotations' token bucket: burst tokens at most, refilled at
// rate per second of real time. A batch may start whenever a token is left
// and takes one per rotation, so the bucket can go into debt by up to one
// batch; the next waits until the debt is paid. On average the scheduler
// starts rate rotations a second, never more than a burst at once.
type pacer struct {
	rate, burst, tokens float64
	last                time.Time
}

func newPacer(rate float64, burst int) pacer {
	return pacer{rate: rate, burst: float64(burst), tokens: float64(burst), last: time.Now()}
}

func (p *pacer) unlimited() bool { return math.IsInf(p.rate, 1) }

func (p *pacer) refill() {
	now := time.Now()
	p.tokens = min(p.burst, p.tokens+now.Sub(p.last).Seconds()*p.rate)
	p.last = now
}

// ready reports whether a rotation may start now.
func (p *pacer) ready() bool {
	if p.unlimited() {
		return true
	}
	p.refill()
	return p.tokens > 0
}

// take spends n tokens (gives them back when n is negative).
func (p *pacer) take(n int) {
	if !p.unlimited() {
		p.tokens = min(p.burst, p.tokens-float64(n))
	}
}

// wait is how long until a rotation may start.
func (p *pacer) wait() time.Duration {
	if p.ready() {
		return time.Millisecond
	}
	return max(time.Millisecond, time.Duration((1-p.tokens)/p.rate*float64(time.Second)))
}
