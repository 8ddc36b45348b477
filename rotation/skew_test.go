package rotation

import (
	"testing"
	"time"

	"github.com/raftkms/raftkms/fsm"
)

// TestDeletionWaitsForOwnClock: one event stamped a month ahead (a leader
// whose clock ran away) moves the state's clock past a key's deletion time.
// A leader with a correct clock still deletes the key only when its own
// clock reaches the deletion time, while rotations may follow the state's
// clock (they destroy nothing).
func TestDeletionWaitsForOwnClock(t *testing.T) {
	h := newHarness(t)
	h.ok(createKey("doomed"))
	h.ok(scheduleDeletion("doomed", 7*86400))
	h.ok(createKey("rotating"))
	h.ok(enableRot("rotating", 86400))
	deletionAt := h.key("doomed").DeletionAt

	jump := tagKey("doomed", "skew", "ahead")
	jump.TimeUnixNano = h.now() + 30*86400*sec
	h.ok(jump)

	n := h.start()
	h.settle(n)
	eventually(t, "the rotation follows the state's clock", func() bool { return h.key("rotating").CurrentVersion() == 2 })
	never(t, "deletion before the leader's own clock reaches the deletion time", 50*time.Millisecond, func() bool {
		return h.key("doomed").State == fsm.KeyStateDeleted
	})
	h.advance(time.Duration(deletionAt-h.now()) - time.Second)
	h.settle(n)
	if h.key("doomed").State == fsm.KeyStateDeleted {
		t.Fatal("deleted a second early by the leader's own clock")
	}
	h.advance(2 * time.Second)
	eventually(t, "deletion once the leader's own clock says so", func() bool { return h.key("doomed").State == fsm.KeyStateDeleted })
}
