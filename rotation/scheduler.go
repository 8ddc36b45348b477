package rotation

import (
	"context"
	"errors"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/raftkms/raftkms/fsm"
)

// Scheduler proposes the changes that fall due with time. Make one per node
// with New, feed it the state machine's change notifications (KeyChanged)
// and run it (Run) for the life of the node: it acts only while the node
// leads.
type Scheduler struct {
	cfg Config
	log hclog.Logger

	running atomic.Bool
	active  atomic.Bool
	// passes counts the loop's passes; idlePass is the last one that ended
	// with nothing in flight and nothing due. A pass starts by reading the
	// clock and the notifications, so once a pass that began after some
	// change ends idle, the change has been acted on. Tests wait on it
	// instead of sleeping.
	passes   atomic.Uint64
	idlePass atomic.Uint64
	// noBatchUntil (Unix nanoseconds, real clock): the cluster refused a
	// batch as unknown to some member; rotations go one entry each until then.
	noBatchUntil atomic.Int64

	mu        sync.Mutex // guards the fields below
	listening bool       // a term is active: notifications matter
	dirty     map[string]struct{}
	dirtyAll  bool          // a Restore replaced the state: rebuild
	wake      chan struct{} // one slot: "something changed"

	statsMu sync.Mutex
	stats   Stats
}

// Stats counts what the scheduler did, for metrics and tests. Counters run
// for the life of the Scheduler, across terms.
type Stats struct {
	Proposed       uint64              // changes handed to the Proposer (each rotation of a batch counts)
	Applied        uint64              // changes that changed the state
	Duplicates     uint64              // answered with the result of an earlier proposal of the same request ID
	Rejected       map[fsm.Code]uint64 // deterministic rejections (duplicates included), by code
	Ambiguous      uint64              // Propose errors after which the event may still apply
	NotApplied     uint64              // Propose errors after which it surely did not
	MaterialErrors uint64              // NewMaterial failures
	Terms          uint64              // terms in which the scheduler became active (after a Barrier)
	ClockHeld      uint64              // passes in which ClockTrusted held every proposal back
	Scans          uint64              // full passes over the keys: one per term, plus one per Restore
	Batches        uint64              // RotateKeys entries proposed
	BatchFallbacks uint64              // batches refused because a member does not know RotateKeys yet
	InFlight       int                 // changes outstanding now (each rotation of a batch counts)
	Backlog        Backlog             // what is due and not yet done (leader only)
}

// New validates cfg, fills in defaults and makes a scheduler that is idle
// until Run.
func New(cfg Config) (*Scheduler, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Scheduler{
		cfg:   cfg,
		log:   cfg.Logger,
		dirty: map[string]struct{}{},
		wake:  make(chan struct{}, 1),
		stats: Stats{Rejected: map[fsm.Code]uint64{}},
	}, nil
}

// KeyChanged tells the scheduler that a key's state changed; "" means the
// whole state was replaced (Restore). Wire it to fsm.Config.OnChange: it runs
// on the apply path, so it never blocks — it marks the key dirty and signals
// the loop, which re-reads the key. While the node does not lead it does
// nothing, because every term starts with a full pass anyway.
func (s *Scheduler) KeyChanged(keyID string) {
	s.mu.Lock()
	if !s.listening {
		s.mu.Unlock()
		return
	}
	if keyID == "" {
		s.dirtyAll = true
		clear(s.dirty)
	} else if !s.dirtyAll {
		s.dirty[keyID] = struct{}{}
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// listen turns notification tracking on or off, dropping what was recorded:
// a term starts listening just before its full pass, so nothing that changes
// after the pass is missed, and what changed before it is in the pass.
func (s *Scheduler) listen(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listening = on
	s.dirtyAll = false
	clear(s.dirty)
}

// takeDirty hands the loop the keys changed since the last call.
func (s *Scheduler) takeDirty() (ids []string, all bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all = s.dirtyAll
	s.dirtyAll = false
	if len(s.dirty) > 0 {
		ids = make([]string, 0, len(s.dirty))
		for id := range s.dirty {
			ids = append(ids, id)
		}
		clear(s.dirty)
	}
	return ids, all
}

// Active reports whether the scheduler is acting as leader: its term's
// Barrier has passed and its heap is built. It turns false only once every
// proposal of the term has returned.
func (s *Scheduler) Active() bool { return s.active.Load() }

// Stats returns a copy of the counters.
func (s *Scheduler) Stats() Stats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	st := s.stats
	st.Rejected = maps.Clone(s.stats.Rejected)
	return st
}

func (s *Scheduler) count(fn func(*Stats)) {
	s.statsMu.Lock()
	fn(&s.stats)
	s.statsMu.Unlock()
}

// Run follows the node's leadership until ctx ends or the leadership channel
// closes (node shutdown), then returns nil once all its work has stopped.
// Each time the node becomes leader a term starts: Barrier, a full pass over
// the keys, then incremental scheduling. When leadership is lost the term's
// context is cancelled at once, which also cancels the proposals in flight.
func (s *Scheduler) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer s.running.Store(false)
	ch, unsubscribe := s.cfg.Leadership.SubscribeLeadership()
	defer unsubscribe()

	var stop func()
	end := func() {
		if stop != nil {
			stop()
			stop = nil
		}
	}
	defer end()
	for {
		select {
		case <-ctx.Done():
			return nil
		case leader, ok := <-ch:
			// Every true may be a new term (intermediate values can be
			// dropped), so the old term ends and a new one starts with a
			// fresh Barrier.
			end()
			if !ok {
				return nil
			}
			if leader {
				stop = s.startTerm(ctx)
			}
		}
	}
}

// startTerm runs one term in the background and returns the function that
// ends it and waits until it has.
func (s *Scheduler) startTerm(parent context.Context) func() {
	ctx, cancel := context.WithCancel(parent)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.lead(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// lead is one term: wait for the state to catch up, build the heap, then
// schedule until ctx ends.
func (s *Scheduler) lead(ctx context.Context) {
	if !s.barrier(ctx) {
		return
	}
	t := newTerm(s, ctx)
	s.listen(true)
	defer func() {
		t.drain()
		s.listen(false)
		s.active.Store(false)
		s.count(func(st *Stats) { st.Backlog = Backlog{} })
		s.log.Info("scheduler stopped: leadership lost")
	}()
	t.rebuild()
	s.count(func(st *Stats) { st.Terms++ })
	s.active.Store(true)
	s.log.Info("scheduler active", "scheduled", t.h.Len())
	t.loop()
}

// barrier waits until the state has caught up with the term, retrying with
// backoff: acting on a state that lags the log would propose changes that
// are already done (harmless, thanks to the guards, but wasted).
func (s *Scheduler) barrier(ctx context.Context) bool {
	failures := 0
	for {
		bctx, cancel := context.WithTimeout(ctx, s.cfg.ProposeTimeout)
		err := s.cfg.Proposer.Barrier(bctx)
		cancel()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		failures++
		s.log.Warn("barrier failed; retrying", "error", err, "attempt", failures)
		if !s.sleep(ctx, s.backoff(failures)) {
			return false
		}
	}
}

// backoff is the delay before attempt failures+1.
func (s *Scheduler) backoff(failures int) time.Duration {
	d := s.cfg.RetryBackoff
	for i := 1; i < failures && d < s.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, s.cfg.MaxBackoff)
}

// sleep waits d on the injected clock, looking at it at least every Tick.
func (s *Scheduler) sleep(ctx context.Context, d time.Duration) bool {
	until := s.cfg.Now().Add(d)
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for {
		left := until.Sub(s.cfg.Now())
		if left <= 0 {
			return true
		}
		timer.Reset(min(left, s.cfg.Tick))
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
		}
	}
}

// now is the time due dates are compared with: the scheduler's own clock,
// which ClockTrusted vouches for. The state's clock is not consulted: it
// never goes back, so one far-future stamp would make every rotation due.
func (s *Scheduler) now() int64 { return s.cfg.Now().UnixNano() }

// clockTrusted says whether the scheduler may propose now.
func (s *Scheduler) clockTrusted() bool {
	return s.cfg.ClockTrusted == nil || s.cfg.ClockTrusted()
}

// rejectionCode is the code of a deterministic rejection.
func rejectionCode(err error) fsm.Code {
	var rej *fsm.Rejection
	if errors.As(err, &rej) {
		return rej.Code
	}
	return fsm.CodeValidation
}
