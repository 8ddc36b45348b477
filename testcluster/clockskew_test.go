package testcluster_test

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/raftkms/raftkms/fsm"
	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/rpc"
	"github.com/raftkms/raftkms/testcluster"
)

// skewCluster is a 3-node cluster with one injectable clock per node and
// second-scale rotation and deletion bounds. deletedAt records, on node 0's
// apply path, the real time at which each key was first seen deleted.
type skewCluster struct {
	*testcluster.Cluster
	clocks []*testcluster.Clock

	logs lockedBuffer // every node's log lines, from Info up

	mu        sync.Mutex
	deletedAt map[string]time.Time
}

func newSkewCluster(t *testing.T) *skewCluster {
	t.Helper()
	sc := &skewCluster{clocks: []*testcluster.Clock{{}, {}, {}}, deletedAt: map[string]time.Time{}}
	sc.Cluster = testcluster.New(t, 3, testcluster.WithLogLevel(hclog.Info), testcluster.WithLogCapture(&sc.logs), testcluster.WithAPI(
		testcluster.WithClocks(sc.clocks),
		testcluster.WithLimits(rpc.Limits{MinPendingWindow: time.Second, MinRotationPeriod: time.Second}),
		testcluster.WithOnApply(func(i int, keyID string) {
			if i != 0 {
				return
			}
			if k, ok := sc.FSM(0).Key(keyID); ok && k.State == fsm.KeyStateDeleted {
				sc.mu.Lock()
				if _, seen := sc.deletedAt[keyID]; !seen {
					sc.deletedAt[keyID] = time.Now()
				}
				sc.mu.Unlock()
			}
		}),
	))
	sc.WaitServing(t)
	return sc
}

func (sc *skewCluster) deleted(id string) (time.Time, bool) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	at, ok := sc.deletedAt[id]
	return at, ok
}

// status is node i's ClusterService Status.
func (sc *skewCluster) status(t *testing.T, i int) *clusterv1.StatusResponse {
	t.Helper()
	return must[*clusterv1.StatusResponse](t, "Status")(sc.ClusterAPI(i).Status(apiCtx(t), &clusterv1.StatusRequest{}))
}

// waitFor polls cond with a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testcluster.WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}

// TestSkewedLeaderDestroysNothingEarly: a node whose clock runs 6 h ahead
// is made leader. Before clock agreement, it would have deleted a key whose
// waiting period had seconds left and rotated every key due within 6 h at
// once. Now it proposes nothing time-stamped, hands leadership over, reports
// its clock as untrusted, and the cluster goes on writing under a healthy
// leader; the key is deleted only once its waiting period has passed on the
// cluster's clocks.
func TestSkewedLeaderDestroysNothingEarly(t *testing.T) {
	sc := newSkewCluster(t)
	ctx := apiCtx(t)
	l := sc.WaitForLeader(t)
	doomed := createKey(t, sc.KMS(l), "doomed")
	sched := must[*kmsv1.ScheduleKeyDeletionResponse](t, "ScheduleKeyDeletion")(sc.KMS(l).ScheduleKeyDeletion(ctx,
		&kmsv1.ScheduleKeyDeletionRequest{KeyId: doomed, PendingWindowSeconds: 12}))
	deletionAt := time.Unix(0, sched.DeletionDate.AsTime().UnixNano())
	rotating := createKey(t, sc.KMS(l), "rotating")
	must[*kmsv1.EnableKeyRotationResponse](t, "EnableKeyRotation")(sc.KMS(l).EnableKeyRotation(ctx,
		&kmsv1.EnableKeyRotationRequest{KeyId: rotating, RotationPeriodSeconds: 3600}))

	skewed := (l + 1) % 3
	sc.clocks[skewed].Set(6 * time.Hour)
	waitFor(t, "the skewed node to see its clock disagree", func() bool {
		st := sc.status(t, skewed)
		return !st.ClockTrusted && time.Duration(st.ClockOffsetNanos) > 5*time.Hour
	})
	var led atomic.Bool
	gained, unsubscribe := sc.Node(skewed).SubscribeLeadership()
	defer unsubscribe()
	go func() {
		for v := range gained {
			if v {
				led.Store(true)
			}
		}
	}()
	// The transfer may report a timeout when the skewed node hands
	// leadership on at once; what counts is that it led.
	if err := sc.TransferLeadership(skewed); err != nil {
		t.Logf("transfer leadership to the skewed node: %v", err)
	}
	waitFor(t, "the skewed node to lead", led.Load)
	// It hands leadership over to a node whose clock agrees.
	waitFor(t, "a healthy leader", func() bool {
		nl := sc.Leader()
		return nl >= 0 && nl != skewed && sc.status(t, nl).ClockTrusted
	})
	// Writes go on, also through the skewed node (which forwards them).
	for i := range 3 {
		must[*kmsv1.TagResourceResponse](t, "TagResource")(sc.KMS(i).TagResource(ctx, &kmsv1.TagResourceRequest{
			KeyId: rotating, Tags: []*kmsv1.Tag{{TagKey: "via", TagValue: sc.ID(i)}}}))
	}
	created := createKey(t, sc.KMS(skewed), "through the skewed node")
	st := sc.status(t, skewed)
	if st.ClockTrusted || time.Duration(st.ClockOffsetNanos) < 5*time.Hour {
		t.Fatalf("the skewed node reports clock_trusted=%v offset=%v", st.ClockTrusted, time.Duration(st.ClockOffsetNanos))
	}
	sc.WaitConverged(t)
	for i := range 3 {
		if k, _ := sc.FSM(i).Key(rotating); k.CurrentVersion() != 1 {
			t.Fatalf("node %d: key rotated by the skewed clock (version %d)", i, k.CurrentVersion())
		}
		if _, ok := sc.FSM(i).Key(created); !ok {
			t.Fatalf("node %d misses the key created through the skewed node", i)
		}
		if c := time.Unix(0, sc.FSM(i).Clock()); c.After(time.Now().Add(time.Minute)) {
			t.Fatalf("node %d: the state's clock is %v ahead of real time", i, time.Until(c).Round(time.Second))
		}
	}
	// The operator is told, with the offset.
	if logs := string(sc.logs.Bytes()); !strings.Contains(logs, "clock disagrees with the cluster's") ||
		!(strings.Contains(logs, "offset=5h59m") || strings.Contains(logs, "offset=6h0m")) {
		// The offset is measured over a round trip: a hair under or over 6 h.
		t.Errorf("no log line says that node %d's clock disagrees, with its offset", skewed)
	}
	// The deletion happens, and not before its time on the cluster's clocks.
	waitFor(t, "the scheduled deletion", func() bool { _, ok := sc.deleted(doomed); return ok })
	if at, _ := sc.deleted(doomed); at.Before(deletionAt) {
		t.Fatalf("key deleted at %v, %v before its waiting period ended", at, deletionAt.Sub(at))
	}
}

// TestSmallSkewServesNormally: a leader whose clock is 1 s ahead is within
// the bound: it stays leader, its clock is trusted, it serves writes, and
// its scheduler rotates keys.
func TestSmallSkewServesNormally(t *testing.T) {
	sc := newSkewCluster(t)
	ctx := apiCtx(t)
	l := sc.WaitForLeader(t)
	sc.clocks[l].Set(time.Second)
	waitFor(t, "the leader's clock measured 1 s ahead and trusted", func() bool {
		st := sc.status(t, l)
		off := time.Duration(st.ClockOffsetNanos)
		return st.ClockTrusted && off > 500*time.Millisecond && off < 1500*time.Millisecond
	})
	key := createKey(t, sc.KMS(l), "rotating")
	must[*kmsv1.EnableKeyRotationResponse](t, "EnableKeyRotation")(sc.KMS(l).EnableKeyRotation(ctx,
		&kmsv1.EnableKeyRotationRequest{KeyId: key, RotationPeriodSeconds: 2}))
	waitFor(t, "an automatic rotation", func() bool {
		k, _ := sc.FSM(sc.WaitForLeader(t)).Key(key)
		return k.CurrentVersion() >= 2
	})
	// (Leadership may move on a loaded machine; never for the clock.)
	if logs := string(sc.logs.Bytes()); strings.Contains(logs, "clock disagrees") || strings.Contains(logs, "because of this node's clock") {
		t.Fatal("a clock within the bound was judged off the cluster's")
	}
	for i := range 3 {
		if st := sc.status(t, i); !st.ClockTrusted {
			t.Fatalf("node %d reports its clock untrusted (offset %v)", i, time.Duration(st.ClockOffsetNanos))
		}
	}
}
