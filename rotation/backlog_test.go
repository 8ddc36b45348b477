package rotation

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

// The backlog counts rotations that are due and not done, including ones
// backing off after failures, ages them into overdue, names the oldest due
// time, and empties once they are done.
func TestBacklog(t *testing.T) {
	h := newHarness(t)
	n := h.start()
	var failing = make(chan struct{})
	n.p.setHook(func(_ context.Context, env *eventsv1.Envelope, apply func() *fsm.Result) (*fsm.Result, error) {
		select {
		case <-failing:
			return apply(), nil
		default:
			return nil, errors.New("test: not applied")
		}
	})
	if b := n.s.Stats().Backlog; b.Due != 0 || b.OldestRotationDue != 0 {
		t.Fatalf("backlog before anything is due: %+v", b)
	}
	h.dueKey("a", "b", "c")
	dueAt := h.key("a").Rotation.NextRotation
	h.advance(2 * time.Second) // past backlogEvery
	h.settle(n)
	eventually(t, "three due", func() bool { return n.s.Stats().Backlog.Due == 3 })
	b := n.s.Stats().Backlog
	if b.Overdue != 0 || b.OldestRotationDue != dueAt {
		t.Fatalf("backlog %+v, want 0 overdue and oldest due at %d", b, dueAt)
	}

	h.advance(OverdueAfter + 2*time.Second)
	h.settle(n)
	eventually(t, "three overdue", func() bool { return n.s.Stats().Backlog.Overdue == 3 })
	if b := n.s.Stats().Backlog; b.Due != 3 || b.OldestRotationDue != dueAt {
		t.Fatalf("backlog %+v, want 3 due, oldest at %d", b, dueAt)
	}

	close(failing)
	h.advance(2 * time.Minute) // past every backoff
	h.settle(n)
	h.advance(2 * time.Second)
	h.settle(n)
	eventually(t, "backlog empty", func() bool { b := n.s.Stats().Backlog; return b.Due == 0 && b.OldestRotationDue == 0 })
	checkVersions(t, h.key("a"), 2)
}
