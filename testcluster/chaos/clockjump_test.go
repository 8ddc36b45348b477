package chaos

import (
	"context"
	"testing"
	"time"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/rpc"
	"github.com/raftkms/raftkms/testcluster"
	"google.golang.org/grpc/metadata"
)

// TestRetryAfterLeaderClockJump: a client whose RotateKeyOnDemand was
// applied but whose answer was lost retries it, under the same request ID,
// a few seconds later — after the leader's clock jumped a day ahead while a
// write was made. The chaos suite found that the state machine, which
// measured its idempotency window (24 h) in event time alone, forgot every
// request ID after one such event, and the retry rotated the key a second
// time. Request IDs are now also kept for a number of log entries
// (fsm.Config.IdempotencyEntries), so the retry applies once. And since
// leaders stamp events only while their clock agrees with their peers'
// (rpc/clock.go), the jumped leader no longer stamps the write at all: it
// refuses it and hands leadership over, the write is made under a healthy
// leader, and the state's clock never jumps.
func TestRetryAfterLeaderClockJump(t *testing.T) {
	clocks := []*testcluster.Clock{{}, {}, {}}
	c := testcluster.New(t, 3, testcluster.WithAPI(testcluster.WithClocks(clocks)))
	c.WaitServing(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := c.Leader()
	created, err := c.KMS(l).CreateKey(ctx, &kmsv1.CreateKeyRequest{Description: "retried"})
	if err != nil {
		t.Fatal(err)
	}
	key := created.KeyMetadata.KeyId
	rctx := metadata.AppendToOutgoingContext(ctx, rpc.MDRequestID, "rotate-once")
	first, err := c.KMS(l).RotateKeyOnDemand(rctx, &kmsv1.RotateKeyOnDemandRequest{KeyId: key})
	if err != nil {
		t.Fatal(err)
	}
	// The answer is lost. Meanwhile the leader's clock jumps 25 h ahead
	// for one write (which another leader makes), then is put right.
	clocks[l].Set(25 * time.Hour)
	if _, err := c.KMS(l).TagResource(ctx, &kmsv1.TagResourceRequest{KeyId: key, Tags: []*kmsv1.Tag{{TagKey: "t", TagValue: "v"}}}); err != nil {
		t.Fatal(err)
	}
	clocks[l].Set(0)
	for i := range 3 {
		if ahead := time.Until(time.Unix(0, c.FSM(i).Clock())); ahead > time.Minute {
			t.Fatalf("node %d: the state's clock jumped %v ahead", i, ahead.Round(time.Second))
		}
	}
	again, err := c.KMS(c.Leader()).RotateKeyOnDemand(rctx, &kmsv1.RotateKeyOnDemandRequest{KeyId: key})
	if err != nil {
		t.Fatal(err)
	}
	c.WaitConverged(t)
	k, _ := c.FSM(c.Leader()).Key(key)
	onDemand := 0
	for _, v := range k.Versions {
		if v.Type == eventsv1.RotationType_ROTATION_TYPE_ON_DEMAND {
			onDemand++
		}
	}
	if onDemand != 1 || again.KeyVersion != first.KeyVersion {
		t.Fatalf("one logical rotation (request rotate-once) made %d versions: first answer v%d, retry answered v%d; state clock %v ahead",
			onDemand, first.KeyVersion, again.KeyVersion, time.Until(time.Unix(0, c.FSM(l).Clock())).Round(time.Hour))
	}
}
