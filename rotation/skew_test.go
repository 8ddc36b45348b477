package rotation

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkms/raftkms/fsm"
)

// TestDueByOwnClockOnly: the state's clock is a month ahead (one event
// stamped by a leader whose clock ran away, which the state machine may cap
// but never undoes). A leader with a correct clock neither deletes nor
// rotates anything until its own clock says so: the state's clock is never
// a reason to act.
func TestDueByOwnClockOnly(t *testing.T) {
	h := newHarness(t)
	h.ok(createKey("doomed"))
	h.ok(scheduleDeletion("doomed", 7*86400))
	h.ok(createKey("rotating"))
	h.ok(enableRot("rotating", 86400))
	deletionAt := h.key("doomed").DeletionAt
	rotateAt := h.key("rotating").Rotation.NextRotation

	jump := tagKey("doomed", "skew", "ahead")
	jump.TimeUnixNano = h.now() + 30*86400*sec
	h.ok(jump)
	h.state.ahead.Store(30 * 86400 * sec)

	n := h.start()
	h.settle(n)
	if got := h.key("rotating").CurrentVersion(); got != 1 {
		t.Fatalf("rotated by the state's clock: version %d", got)
	}
	if h.key("doomed").State == fsm.KeyStateDeleted {
		t.Fatal("deleted by the state's clock")
	}
	h.advance(time.Duration(rotateAt-h.now()) - time.Second)
	h.settle(n)
	if got := h.key("rotating").CurrentVersion(); got != 1 {
		t.Fatalf("rotated a second early by the leader's own clock: version %d", got)
	}
	h.advance(2 * time.Second)
	eventually(t, "rotation once the leader's own clock says so", func() bool { return h.key("rotating").CurrentVersion() == 2 })
	h.advance(time.Duration(deletionAt-h.now()) - time.Second)
	h.settle(n)
	if h.key("doomed").State == fsm.KeyStateDeleted {
		t.Fatal("deleted a second early by the leader's own clock")
	}
	h.advance(2 * time.Second)
	eventually(t, "deletion once the leader's own clock says so", func() bool { return h.key("doomed").State == fsm.KeyStateDeleted })
}

// TestClockGateHoldsEverything: while ClockTrusted says no (the leader's
// clock disagrees with its peers'), nothing is proposed however much is
// due; once it says yes, everything due is done.
func TestClockGateHoldsEverything(t *testing.T) {
	h := newHarness(t)
	h.ok(createKey("doomed"))
	h.ok(scheduleDeletion("doomed", 7*86400))
	h.ok(createKey("rotating"))
	h.ok(enableRot("rotating", 86400))
	var trusted atomic.Bool
	n := h.start(func(c *Config) { c.ClockTrusted = trusted.Load })
	h.advance(40 * 24 * time.Hour)
	held := n.s.Stats().ClockHeld
	eventually(t, "passes held back by the clock gate", func() bool { return n.s.Stats().ClockHeld > held+10 })
	if calls := n.p.calls.Load(); calls != 0 {
		t.Fatalf("%d proposals while the clock was not trusted", calls)
	}
	if h.key("rotating").CurrentVersion() != 1 || h.key("doomed").State == fsm.KeyStateDeleted {
		t.Fatal("state changed while the clock was not trusted")
	}
	trusted.Store(true)
	eventually(t, "rotation once the clock is trusted", func() bool { return h.key("rotating").CurrentVersion() == 2 })
	eventually(t, "deletion once the clock is trusted", func() bool { return h.key("doomed").State == fsm.KeyStateDeleted })
}
