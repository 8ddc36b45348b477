// Package rotation is the leader's scheduler: it finds what is due in the
// replicated state — automatic rotations, deletions at the end of their
// waiting period, expiries of imported material — and proposes the events
// that do it.
//
// It runs only while its node leads. Each term it waits for its state to
// catch up (Barrier), builds a heap of due times from one pass over the keys,
// and from then on keeps the heap current from the state machine's change
// notifications (KeyChanged), so that no tick ever scans all keys. Every
// event it proposes carries a compare-and-set guard (expected version,
// expected deletion time, expected ValidTo) and a deterministic request ID,
// so that the same change proposed twice — by an old and a new leader, or
// after an Apply error whose entry still committed — applies once.
package rotation

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

// Proposer appends events to the replicated log. *raftnode.Node satisfies it.
//
// Propose returns the state machine's result once the entry is applied; a
// deterministic rejection is a result (Result.Err), not an error. A non-nil
// error means the outcome is unknown to the caller: the entry may or may not
// commit later. Barrier returns once every entry before it is applied
// locally; a new leader calls it before trusting its own state.
type Proposer interface {
	Propose(ctx context.Context, env *eventsv1.Envelope) (*fsm.Result, error)
	Barrier(ctx context.Context) error
}

// Leadership tells the scheduler when it may act. *raftnode.Node satisfies
// it: the channel always holds the latest state, true meaning a (possibly
// new) term in which this node leads; it is closed when the node shuts down
// or cancel is called.
type Leadership interface {
	SubscribeLeadership() (<-chan bool, func())
}

// State is the read-only view of the replicated state the scheduler needs.
// *fsm.FSM satisfies it. It is an interface so tests can count reads: the
// scheduler calls ForEachKey once per term (and after a Restore), and Key
// only for keys that changed or fell due.
type State interface {
	Key(id string) (*fsm.Key, bool)
	ForEachKey(fn func(*fsm.Key) bool)
	Clock() int64
}

// Principal is recorded as the author of every event the scheduler proposes.
const Principal = "raftkms:scheduler"

// Defaults for Config fields left zero.
const (
	DefaultMaxInFlight    = 4
	DefaultTick           = time.Second
	DefaultRetryBackoff   = time.Second
	DefaultMaxBackoff     = time.Minute
	DefaultProposeTimeout = 30 * time.Second
	DefaultBatchSize      = 256
	DefaultMinBatch       = 16
	DefaultRotationRate   = 10_000
	DefaultSealWorkers    = 2
)

// Config configures a Scheduler. Proposer, Leadership, State and NewMaterial
// are required.
type Config struct {
	Proposer   Proposer   // the Raft node
	Leadership Leadership // the Raft node's leadership notifications
	State      State      // the node's state machine, read only

	// NewMaterial returns fresh key material for version of keyID, already
	// sealed under the root key (this package never sees the root key nor
	// plaintext material). An error is retried with backoff, for that key
	// only.
	NewMaterial func(keyID string, version uint32) ([]byte, error)

	// MayHaveApplied classifies an error from Propose: true when the entry
	// may still commit (raftnode.ErrAmbiguous), false when it surely did not
	// (raftnode.ErrNotLeader, ErrBusy, ErrShutdown). The scheduler reacts to
	// both the same way — re-read the key, re-decide, retry with backoff and
	// the same request ID — so the classification only feeds Stats and logs.
	// Nil counts every error as ambiguous, the safe assumption.
	MayHaveApplied func(error) bool

	// Now is the scheduler's clock (default time.Now). Events are stamped
	// with it and due times are compared with it alone: never with the
	// state's clock, which one event stamped by a leader whose clock ran
	// ahead would move for good.
	Now func() time.Time

	// ClockTrusted gates every proposal: while it returns false the
	// scheduler proposes nothing and looks again every Tick. Wire it to the
	// node's clock agreement (rpc.Server.ClockReady): a leader whose clock
	// is off its peers' by more than the cluster's bound, or whose state's
	// clock lags its own, must not end a waiting period or rotate. Nil
	// trusts Now always (tests of the scheduler alone).
	ClockTrusted func() bool

	// MaxInFlight bounds the proposals the scheduler has outstanding at once,
	// so that a burst of due keys never starves client writes. A batch of
	// rotations is one proposal.
	MaxInFlight int

	// BatchSize is the most automatic rotations proposed as one RotateKeys
	// entry (at most fsm.MaxRotateBatch; the entry also stays within
	// fsm.MaxRotateBatchBytes). Batches are proposed only while every member
	// of the cluster knows the event (fsm.SchemaBatch); otherwise, and when
	// fewer than MinBatch rotations are due at once, each rotation is an
	// entry of its own. 1 turns batching off.
	BatchSize int
	MinBatch  int

	// RotationRate bounds automatic rotations per second, batched or not: a
	// token bucket of BatchSize tokens refilled at this rate (on the real
	// clock, not Now: it paces work, not schedules). A storm of N due keys
	// takes about N/RotationRate seconds, and client traffic meets at most
	// this many rotations a second of replication and apply work on every
	// node. +Inf does not pace.
	RotationRate float64

	// SealWorkers is how many goroutines make a batch's new material at
	// once (NewMaterial must then be safe for concurrent use, as the node's
	// is).
	SealWorkers int

	// Tick is the longest the scheduler sleeps without looking at the clock
	// again. Waking only peeks at the heap's earliest entry; it guards
	// against wall-clock jumps (and lets tests drive a fake clock).
	Tick time.Duration

	// RetryBackoff is the first delay before a failed change of one key is
	// tried again; it doubles per consecutive failure up to MaxBackoff.
	RetryBackoff time.Duration
	MaxBackoff   time.Duration

	// ProposeTimeout bounds one proposal, so that a stuck one frees its
	// in-flight slot (the outcome is then ambiguous and retried).
	ProposeTimeout time.Duration

	// Logger is named "rotation" by New. Nil discards.
	Logger hclog.Logger
}

// ErrConfig is wrapped by New for an incomplete or invalid Config.
var ErrConfig = errors.New("rotation: invalid config")

// ErrRunning is returned by Run when the scheduler is already running.
var ErrRunning = errors.New("rotation: scheduler already running")

func (c *Config) validate() error {
	switch {
	case c.Proposer == nil:
		return fmt.Errorf("%w: Proposer is required", ErrConfig)
	case c.Leadership == nil:
		return fmt.Errorf("%w: Leadership is required", ErrConfig)
	case c.State == nil:
		return fmt.Errorf("%w: State is required", ErrConfig)
	case c.NewMaterial == nil:
		return fmt.Errorf("%w: NewMaterial is required", ErrConfig)
	case c.MaxInFlight < 0, c.Tick < 0, c.RetryBackoff < 0, c.MaxBackoff < 0, c.ProposeTimeout < 0,
		c.BatchSize < 0, c.MinBatch < 0, c.SealWorkers < 0, c.RotationRate < 0 || math.IsNaN(c.RotationRate):
		return fmt.Errorf("%w: negative limit or duration", ErrConfig)
	case c.BatchSize > fsm.MaxRotateBatch:
		return fmt.Errorf("%w: BatchSize %d is above fsm.MaxRotateBatch %d", ErrConfig, c.BatchSize, fsm.MaxRotateBatch)
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.MinBatch == 0 {
		c.MinBatch = DefaultMinBatch
	}
	if c.RotationRate == 0 {
		c.RotationRate = DefaultRotationRate
	}
	if c.SealWorkers == 0 {
		c.SealWorkers = DefaultSealWorkers
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.Tick == 0 {
		c.Tick = DefaultTick
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = DefaultRetryBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.MaxBackoff < c.RetryBackoff {
		c.MaxBackoff = c.RetryBackoff
	}
	if c.ProposeTimeout == 0 {
		c.ProposeTimeout = DefaultProposeTimeout
	}
	if c.MayHaveApplied == nil {
		c.MayHaveApplied = func(error) bool { return true }
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	c.Logger = c.Logger.Named("rotation")
	return nil
}
