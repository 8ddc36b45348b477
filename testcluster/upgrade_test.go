package testcluster_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/testcluster"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// eventually polls cond every 20 ms until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not so after 15s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRollingUpgrade upgrades a cluster of nodes that know only event
// schema 1 (as an older build) one node at a time to this build's schema 2,
// with writes running throughout. While any member announces schema 1, every
// entry is written at schema 1, whichever node leads, so no old node halts
// (an old node that met a schema-2 entry would panic and end the test); once
// every member announces schema 2, the leader writes schema 2. Nothing
// acknowledged is lost and every node converges to the same digest.
func TestRollingUpgrade(t *testing.T) {
	var mu sync.Mutex
	schemas := []uint32{1, 1, 1}
	schemaOf := func(i int) uint32 {
		mu.Lock()
		defer mu.Unlock()
		return schemas[i]
	}
	c := testcluster.New(t, 3, testcluster.WithAPI(testcluster.WithMaxSchema(schemaOf)))
	c.WaitServing(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// Writes from every node all along: keys created, rotated, used.
	var acked sync.Map
	var writes atomic.Int64
	stop := make(chan struct{})
	// The writer holds pause (shared) for each round; a check that needs the
	// nodes at rest takes it exclusively, so convergence can be observed.
	var pause sync.RWMutex
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			pause.RLock()
			k := c.KMS(n % 3)
			r, err := k.CreateKey(ctx, &kmsv1.CreateKeyRequest{Description: fmt.Sprintf("upgrade-%d", n)})
			if err != nil {
				pause.RUnlock()
				continue // a node restarting; the client retries elsewhere next time
			}
			if _, err := k.RotateKeyOnDemand(ctx, &kmsv1.RotateKeyOnDemandRequest{KeyId: r.KeyMetadata.KeyId}); err == nil {
				acked.Store(r.KeyMetadata.KeyId, uint32(2))
			} else {
				acked.Store(r.KeyMetadata.KeyId, uint32(0))
			}
			writes.Add(1)
			pause.RUnlock()
		}
	}()
	waitWrites := func(more int64) {
		t.Helper()
		target := writes.Load() + more
		eventually(t, "writes go on", func() bool { return writes.Load() >= target })
	}
	clusterSchema := func() uint32 {
		st, err := c.ClusterAPI(c.WaitForLeader(t)).Status(ctx, &clusterv1.StatusRequest{})
		if err != nil {
			return 0
		}
		return st.ClusterSchemaVersion
	}
	// Every node's last applied entry is at want once a new write applied.
	lastSchemas := func(want uint32) {
		t.Helper()
		waitWrites(3)
		pause.Lock()
		defer pause.Unlock()
		c.WaitConverged(t)
		for i := 0; i < 3; i++ {
			if got := c.FSM(i).LastSchema(); got != want {
				t.Fatalf("node %d last applied an entry of schema %d, want %d", i, got, want)
			}
		}
	}

	waitWrites(5)
	lastSchemas(1)
	// What an older member does not know is refused while one is a member,
	// so it never meets an event it would halt on or apply otherwise.
	_, err := c.KMS(0).CreateKey(ctx, &kmsv1.CreateKeyRequest{KeySpec: "RSA_2048", KeyUsage: "SIGN_VERIFY"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "UnsupportedOperationException") {
		t.Fatalf("an RSA key in a schema-1 cluster: %v, want UnsupportedOperationException", err)
	}
	for i := 0; i < 3; i++ {
		mu.Lock()
		schemas[i] = 2
		mu.Unlock()
		c.Kill(i)
		c.Restart(i)
		c.WaitServing(t)
		id := c.ID(i)
		eventually(t, "the upgraded node's announcement is recorded", func() bool {
			n, ok := c.FSM(c.WaitForLeader(t)).Node(id)
			return ok && n.MaxSchema == 2
		})
		if i < 2 {
			if got := clusterSchema(); got != 1 {
				t.Fatalf("after upgrading %d of 3 nodes the cluster proposes schema %d, want 1", i+1, got)
			}
			lastSchemas(1)
			// Leadership on an upgraded node: it still writes schema 1.
			if l := c.WaitForLeader(t); l != i {
				if _, err := c.ClusterAPI(l).TransferLeadership(ctx, &clusterv1.TransferLeadershipRequest{TargetNodeId: id}); err == nil {
					eventually(t, "leadership moves to the upgraded node", func() bool { return c.Leader() == i })
				}
			}
			lastSchemas(1)
		}
	}
	eventually(t, "every member announces schema 2", func() bool { return clusterSchema() == 2 })
	lastSchemas(2)
	if _, err := c.KMS(0).CreateKey(ctx, &kmsv1.CreateKeyRequest{KeySpec: "RSA_2048", KeyUsage: "SIGN_VERIFY"}); err != nil {
		t.Fatalf("an RSA key once every member runs schema 2: %v", err)
	}
	close(stop)
	wg.Wait()

	c.WaitConverged(t)
	count := 0
	acked.Range(func(k, v any) bool {
		count++
		for i := 0; i < 3; i++ {
			key, ok := c.FSM(i).Key(k.(string))
			if !ok {
				t.Fatalf("node %d lost acknowledged key %s", i, k)
			}
			if want := v.(uint32); want > 0 && key.CurrentVersion() != want {
				t.Fatalf("node %d: key %s at version %d, want %d", i, k, key.CurrentVersion(), want)
			}
		}
		return true
	})
	if count == 0 {
		t.Fatal("no write was acknowledged during the upgrade")
	}
}
