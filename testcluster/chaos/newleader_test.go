package chaos

import (
	"context"
	"testing"
	"time"

	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/rpc"
	"github.com/raftkms/raftkms/testcluster"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestNewLeaderWriteSeesAcknowledgedKey: a key whose creation the old
// leader acknowledged must be usable for writes on the new leader at once,
// even when the new leader's state machine has not applied the creation
// yet (its log has it; it is slow to apply). The chaos suite found that the
// write path resolved the key from local state without waiting for the
// state to catch up with the term, so the new leader answered
// NotFoundException for a key that exists — a linearizability violation.
// The write path now waits (raftnode.Node.CatchUp) once per term.
//
// Deterministic reproduction: node f's apply path is held (a slow apply
// loop), node g is cut off, the leader creates a key (committed by itself
// and f), the leader dies, g comes back, and f — the only node whose log
// has the key — becomes leader.
func TestNewLeaderWriteSeesAcknowledgedKey(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI())
	c.WaitServing(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := c.Leader()
	f, g := (l+1)%3, (l+2)%3
	warm, err := c.KMS(l).CreateKey(ctx, &kmsv1.CreateKeyRequest{Description: "warm-up"})
	if err != nil {
		t.Fatal(err)
	}
	c.WaitConverged(t)

	// f's apply loop stops at its next key event; g is away.
	c.HoldApply(f)
	c.Isolate(g)
	if _, err := c.KMS(l).TagResource(ctx, &kmsv1.TagResourceRequest{KeyId: warm.KeyMetadata.KeyId,
		Tags: []*kmsv1.Tag{{TagKey: "t", TagValue: "v"}}}); err != nil {
		t.Fatal(err)
	}
	rec := NewRecorder()
	call := rec.Now()
	created, err := c.KMS(l).CreateKey(ctx, &kmsv1.CreateKeyRequest{Description: "acknowledged"})
	if err != nil {
		t.Fatal(err)
	}
	key := created.KeyMetadata.KeyId
	rec.Add(Op{In: Input{Kind: OpCreate, Key: key}, Out: Output{Outcome: OK}, Call: call, Return: rec.Now(), Node: l, RequestID: "create"})
	t.Logf("CreateKey %s acknowledged by leader node%d; node%d has it in its log, not applied", key, l, f)

	c.Kill(l)
	c.Heal()
	deadline := time.Now().Add(testcluster.WaitTimeout)
	for c.Leader() != f {
		if time.Now().After(deadline) {
			t.Fatalf("node%d did not become leader (leader %d)", f, c.Leader())
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	// The new leader's apply loop is slow, not stopped: it catches up a
	// moment after the write arrives.
	call = rec.Now()
	wctx := metadata.AppendToOutgoingContext(ctx, rpc.MDRequestID, "enable-after-failover")
	done := make(chan error, 1)
	go func() {
		_, err := c.KMS(f).EnableKey(wctx, &kmsv1.EnableKeyRequest{KeyId: key})
		done <- err
	}()
	select {
	case err = <-done:
	case <-time.After(300 * time.Millisecond): // the apply loop's delay
		c.ReleaseApply(f)
		err = <-done
	}
	c.ReleaseApply(f)
	if status.Code(err) == codes.NotFound {
		o, exc := classify(err)
		rec.Add(Op{In: Input{Kind: OpEnable, Key: key}, Out: Output{Outcome: o, Exception: exc}, Call: call, Return: rec.Now(), Node: f, RequestID: "enable"})
		res, _ := CheckHistory(rec.Ops(), nil, t.TempDir(), "history", 10*time.Second)
		t.Fatalf("new leader node%d answered EnableKey on acknowledged key %s with %v (porcupine: %s)", f, key, err, res.Result)
	}
	if err != nil {
		t.Fatalf("EnableKey on the new leader: %v", err)
	}
}
