package testcluster_test

import (
	"crypto/rand"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/keycrypto"
	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/rpc"
	"github.com/raftkms/raftkms/testcluster"
)

func otherRootKey(t *testing.T) *keycrypto.RootKey {
	t.Helper()
	r, err := keycrypto.GenerateRootKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// waitRefused waits until node i has refused to serve and returns why.
func waitRefused(t *testing.T, c *testcluster.Cluster, i int) error {
	t.Helper()
	srv := c.Server(i)
	select {
	case <-srv.Failed():
	case <-time.After(testcluster.WaitTimeout):
		t.Fatalf("node %d still has not refused to serve after %v (serving=%v)", i, testcluster.WaitTimeout, srv.Serving())
	}
	if srv.Serving() {
		t.Fatalf("node %d refused but reports serving", i)
	}
	return srv.Err()
}

// checkSealedUnder checks that every version of every key that still holds
// material was sealed under root: nothing sealed under another root key
// reached the log.
func checkSealedUnder(t *testing.T, f *fsm.FSM, root *keycrypto.RootKey) int {
	t.Helper()
	n := 0
	f.ForEachKey(func(k *fsm.Key) bool {
		for _, v := range k.Versions {
			if len(v.Sealed) == 0 {
				continue
			}
			n++
			if id, ok := keycrypto.SealedRootKeyID(v.Sealed); !ok || id != root.ID() {
				t.Errorf("key %s version %d is sealed under root key %q (ok=%v), not the cluster's %s", k.ID, v.Number, id, ok, root.ID())
			}
			if _, err := root.Open(k.ID, v.Number, v.Sealed); err != nil {
				t.Errorf("key %s version %d does not open under the cluster's root key: %v", k.ID, v.Number, err)
			}
		}
		return true
	})
	return n
}

// TestJoinWithWrongRootKeyRefused: a fourth node started with another root
// key asks to join; the leader refuses before adding it as a voter, with a
// message naming both root keys, and the node refuses to serve.
func TestJoinWithWrongRootKeyRefused(t *testing.T) {
	wrong := otherRootKey(t)
	c := testcluster.New(t, 3, testcluster.WithAPI(testcluster.WithRootKeys(func(i int) *keycrypto.RootKey {
		if i == 3 {
			return wrong
		}
		return nil
	})))
	c.WaitServing(t)
	i := c.AddNode()
	err := waitRefused(t, c, i)
	msg := err.Error()
	for _, want := range []string{"root key", wrong.ID(), c.Root().ID()} {
		if !strings.Contains(msg, want) {
			t.Fatalf("refusal %q does not name %q", msg, want)
		}
	}
	members, merr := c.Members()
	if merr != nil {
		t.Fatal(merr)
	}
	for _, m := range members {
		if m.ID == c.ID(i) {
			t.Fatalf("the node with the wrong root key became a member: %v", members)
		}
	}
	c.Kill(i)
	key := createKey(t, c.KMS(0), "after the refused join")
	must[*kmsv1.RotateKeyOnDemandResponse](t, "RotateKeyOnDemand")(c.KMS(1).RotateKeyOnDemand(apiCtx(t), &kmsv1.RotateKeyOnDemandRequest{KeyId: key}))
	c.WaitConverged(t)
	if n := checkSealedUnder(t, c.FSM(0), c.Root()); n < 2 {
		t.Fatalf("only %d sealed versions to check", n)
	}
}

// TestRestartWithWrongRootKeyRefusesToServe: a member restarted with
// another root key catches up, sees that the state records another root
// key, and refuses to serve with a clear message; the others go on, and no
// material sealed under the wrong key ever reaches the log.
func TestRestartWithWrongRootKeyRefusesToServe(t *testing.T) {
	wrong := otherRootKey(t)
	var useWrong atomic.Bool
	c := testcluster.New(t, 3, testcluster.WithAPI(
		testcluster.WithLimits(rpc.Limits{MinRotationPeriod: time.Second}),
		testcluster.WithRootKeys(func(i int) *keycrypto.RootKey {
			if i == 2 && useWrong.Load() {
				return wrong
			}
			return nil
		})))
	c.WaitServing(t)
	ctx := apiCtx(t)
	rotating := createKey(t, c.KMS(0), "rotating")
	must[*kmsv1.EnableKeyRotationResponse](t, "EnableKeyRotation")(c.KMS(0).EnableKeyRotation(ctx,
		&kmsv1.EnableKeyRotationRequest{KeyId: rotating, RotationPeriodSeconds: 1}))

	c.Kill(2)
	useWrong.Store(true)
	c.Restart(2)
	err := waitRefused(t, c, 2)
	want := "this node's root key " + wrong.ID() + " is not the cluster's " + c.Root().ID()
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("refusal %q, want it to say %q", err, want)
	}
	st, serr := c.ClusterAPI(2).Status(ctx, &clusterv1.StatusRequest{})
	if serr == nil && (st.RootKeyId != wrong.ID() || st.ClusterRootKeyId != c.Root().ID()) {
		t.Fatalf("status says root key %s, cluster's %s", st.RootKeyId, st.ClusterRootKeyId)
	}
	if c.Node(2).IsLeader() {
		t.Fatal("the node with the wrong root key leads")
	}
	c.Kill(2)

	// The cluster goes on: writes, and automatic rotations.
	before, _ := c.FSM(c.WaitForLeader(t)).Key(rotating)
	for i := range 2 {
		createKey(t, c.KMS(i), "after the refusal")
	}
	waitFor(t, "automatic rotations under a healthy leader", func() bool {
		k, _ := c.FSM(c.WaitForLeader(t)).Key(rotating)
		return k.CurrentVersion() >= before.CurrentVersion()+2
	})
	c.WaitConverged(t)
	if n := checkSealedUnder(t, c.FSM(0), c.Root()); n < 4 {
		t.Fatalf("only %d sealed versions to check", n)
	}
}
