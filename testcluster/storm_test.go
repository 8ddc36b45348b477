package testcluster_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/raftnode"
	"github.com/raftkms/raftkms/testcluster"
)

// TestRotationStorm makes every key due at once and measures how long the
// leader's scheduler takes to rotate them all, how many log entries it took
// (the scheduler batches due rotations, rotation/batch.go), and what Encrypt
// latency does meanwhile. By default it runs 2,000 keys;
// RAFTKMS_SCALE_KEYS=100000 runs the scale benchmark (a few minutes on two
// cores, most of it setting up the keys):
//
//	RAFTKMS_SCALE_KEYS=100000 go test ./testcluster -run TestRotationStorm -v -timeout 60m
//
// All keys are due at once because every node's clock moves an hour ahead
// together (the clocks still agree, so the leader trusts its own): every
// one-hour rotation falls due.
func TestRotationStorm(t *testing.T) {
	n := 2000
	if s := os.Getenv("RAFTKMS_SCALE_KEYS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("RAFTKMS_SCALE_KEYS=%q", s)
		}
		n = v
	} else if testing.Short() {
		t.Skip("skipped in -short mode")
	}
	// kmsd's own Raft timings, not the tests' hair-trigger ones.
	clocks := []*testcluster.Clock{{}, {}, {}}
	c := testcluster.New(t, 3, testcluster.WithAPI(testcluster.WithClocks(clocks)), testcluster.WithSnapshots(16384, 8192),
		testcluster.WithNodeConfig(func(i int, cfg *raftnode.Config) {
			cfg.HeartbeatTimeout = raftnode.DefaultHeartbeatTimeout
			cfg.ElectionTimeout = raftnode.DefaultElectionTimeout
			cfg.LeaderLeaseTimeout = raftnode.DefaultLeaderLeaseTimeout
		}))
	c.WaitServing(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()

	// Set up n keys with hourly rotation straight through Raft, in parallel.
	setup := time.Now()
	ids := stormKeys(t, ctx, c, n)
	if t.Failed() {
		return
	}
	t.Logf("set up %d keys with rotation in %v", n, time.Since(setup).Round(time.Millisecond))

	// Encrypt latency, before and during the storm, from one client that
	// calls the leader and a follower in turn: a follower's linearizable read
	// also waits for the entries the leader committed before it to reach it
	// and apply, so the two differ under a storm of writes.
	leaderAtStart := c.WaitForLeader(t)
	kms := [2]kmsv1.KeyManagementServiceClient{c.KMS(leaderAtStart), c.KMS((leaderAtStart + 1) % 3)}
	measure := func(stop <-chan struct{}, max int) (lat [2][]time.Duration) {
		for i := 0; len(lat[0])+len(lat[1]) < max; i++ {
			select {
			case <-stop:
				return lat
			default:
			}
			start := time.Now()
			if _, err := kms[i%2].Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: ids[i%n], Plaintext: []byte("storm")}); err != nil {
				t.Errorf("encrypt: %v", err)
				return lat
			}
			lat[i%2] = append(lat[i%2], time.Since(start))
		}
		return lat
	}
	before := measure(nil, 4000)

	// Keys rotate in the order they fall due, so the poll walks the keys not
	// yet seen rotated in that order and stops at the first that is not: a
	// full pass over the keys per poll would take a share of the CPU the
	// storm is measured against.
	pending := append([]string(nil), ids...)
	due := map[string]int64{}
	for _, id := range ids {
		k, _ := c.FSM(leaderAtStart).Key(id)
		due[id] = k.Rotation.NextRotation
	}
	sort.SliceStable(pending, func(i, j int) bool { return due[pending[i]] < due[pending[j]] })

	// The clock jump: every node's clock an hour and a second ahead.
	for _, ck := range clocks {
		ck.Set(time.Hour + time.Second)
	}
	stormStart := time.Now()
	stopProfile := func() {}
	// RAFTKMS_STORM_CPUPROFILE=file profiles the whole process (all three
	// nodes and the client) during the storm only.
	if path := os.Getenv("RAFTKMS_STORM_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		defer pprof.StopCPUProfile() // on failure; a second stop does nothing
		stopProfile = pprof.StopCPUProfile
	}
	stop := make(chan struct{})
	var during [2][]time.Duration
	done := make(chan struct{})
	go func() { during = measure(stop, 1<<30); close(done) }()

	rotated := func() bool {
		l := c.Leader()
		if l < 0 {
			return false
		}
		f := c.FSM(l)
		for len(pending) > 0 {
			if k, ok := f.Key(pending[0]); !ok || k.CurrentVersion() < 2 {
				return false
			}
			pending = pending[1:]
		}
		return true
	}
	deadline := time.Now().Add(time.Duration(n)*10*time.Millisecond + time.Minute)
	for !rotated() {
		if time.Now().After(deadline) {
			close(stop)
			<-done
			t.Fatalf("only %d of %d keys rotated after %v", n-len(pending), n, time.Since(stormStart))
		}
		time.Sleep(20 * time.Millisecond) // polling
	}
	elapsed := time.Since(stormStart)
	close(stop)
	<-done
	stopProfile()
	c.WaitConverged(t)
	for i := range 3 {
		c.FSM(i).ForEachKey(func(k *fsm.Key) bool {
			if k.ID != "" && len(k.Versions) != 2 && k.Rotation.PeriodSec == 3600 {
				t.Fatalf("node %d key %s has %d versions after one due rotation", i, k.ID, len(k.Versions))
			}
			return true
		})
	}
	pct := func(l []time.Duration, p float64) time.Duration {
		if len(l) == 0 {
			return 0
		}
		s := append([]time.Duration(nil), l...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[int(p*float64(len(s)-1))]
	}
	// Nothing else touched the keys since they were rotated.
	entries, largest := stormEntries(c.FSM(c.WaitForLeader(t)), ids)
	t.Logf("rotated %d keys in %v (%.0f rotations/s)", n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	t.Logf("log entries: %d (%.1f rotations per entry on average, %d at most)", entries, float64(n)/float64(entries), largest)
	report := func(what string, before, during []time.Duration) {
		t.Logf("encrypt via %s, before: p50 %v p99 %v max %v (%d calls)", what, pct(before, .5), pct(before, .99), pct(before, 1), len(before))
		t.Logf("encrypt via %s, during: p50 %v p99 %v max %v (%d calls)", what, pct(during, .5), pct(during, .99), pct(during, 1), len(during))
		t.Logf("encrypt via %s, during/before: p50 %.2fx, p99 %.2fx", what,
			float64(pct(during, .5))/float64(pct(before, .5)), float64(pct(during, .99))/float64(pct(before, .99)))
	}
	if l := c.Leader(); l != leaderAtStart {
		t.Logf("leadership moved from node %d to node %d during the storm", leaderAtStart, l)
	}
	report("the leader", before[0], during[0])
	report("a follower", before[1], during[1])
	report("either", append(before[0], before[1]...), append(during[0], during[1]...))
}

// stormKeys sets up n keys with hourly rotation straight through Raft, in
// parallel, and returns their IDs.
func stormKeys(t *testing.T, ctx context.Context, c *testcluster.Cluster, n int) []string {
	t.Helper()
	ids := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				id := fmt.Sprintf("storm-%06d", i)
				m := make([]byte, 32)
				rand.Read(m)
				sealed, err := c.Root().Seal(id, 1, m)
				if err != nil {
					t.Error(err)
					return
				}
				for _, env := range []*eventsv1.Envelope{
					{TimeUnixNano: time.Now().UnixNano(), RequestId: "create-" + id, Event: &eventsv1.Envelope_CreateKey{CreateKey: &eventsv1.CreateKey{
						KeyId: id, Origin: eventsv1.Origin_ORIGIN_GENERATED, SealedMaterial: sealed}}},
					{TimeUnixNano: time.Now().UnixNano(), RequestId: "rotate-" + id, Event: &eventsv1.Envelope_EnableKeyRotation{
						EnableKeyRotation: &eventsv1.EnableKeyRotation{KeyId: id, RotationPeriodSeconds: 3600}}},
				} {
					// An ambiguous outcome is retried with the same request
					// ID: it applies once either way.
					var res *fsm.Result
					var err error
					for attempt := 0; attempt < 20; attempt++ {
						if res, err = c.Propose(ctx, env); !errors.Is(err, raftnode.ErrAmbiguous) {
							break
						}
					}
					if err != nil || res.Err != nil {
						t.Errorf("setup %s: %v %v", id, err, res)
						return
					}
				}
				ids[i] = id
			}
		}()
	}
	wg.Wait()
	return ids
}

// stormEntries is how many log entries rotated the keys, and the most keys
// one rotated: each key's modification index is the Raft index of the entry
// that last changed it.
func stormEntries(f *fsm.FSM, ids []string) (entries, largest int) {
	perEntry := map[uint64]int{}
	for _, id := range ids {
		perEntry[f.ModIndex(id)]++
	}
	for _, k := range perEntry {
		largest = max(largest, k)
	}
	return len(perEntry), largest
}

// waitVersions polls until every node has every key at version v.
func waitVersions(t *testing.T, c *testcluster.Cluster, ids []string, v uint32) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		done := true
		for i := 0; i < c.N() && done; i++ {
			for _, id := range ids {
				if k, ok := c.FSM(i).Key(id); !ok || k.CurrentVersion() != v {
					done = false
					break
				}
			}
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("keys not all at version %d after a minute", v)
		}
		time.Sleep(20 * time.Millisecond) // polling
	}
}

// TestRotationStormOldMember: while one member runs a build that knows only
// schema 3, a storm of due rotations goes out one entry per key, whichever
// node leads (that member would halt on a RotateKeys entry); once it is
// upgraded, the next storm is batched. Every key rotates exactly once per
// storm on every node.
func TestRotationStormOldMember(t *testing.T) {
	var mu sync.Mutex
	old := uint32(fsm.SchemaBatch - 1)
	schemas := []uint32{old, old, old} // an older cluster, upgraded node by node
	schemaOf := func(i int) uint32 {
		mu.Lock()
		defer mu.Unlock()
		return schemas[i]
	}
	clocks := []*testcluster.Clock{{}, {}, {}}
	c := testcluster.New(t, 3, testcluster.WithAPI(testcluster.WithClocks(clocks), testcluster.WithMaxSchema(schemaOf)))
	c.WaitServing(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 200
	ids := stormKeys(t, ctx, c, n)
	if t.Failed() {
		return
	}
	jump := func(hours int) {
		for _, ck := range clocks {
			ck.Set(time.Duration(hours)*time.Hour + time.Duration(hours)*time.Second)
		}
	}
	upgrade := func(i int) {
		mu.Lock()
		schemas[i] = 0
		mu.Unlock()
		c.Kill(i)
		c.Restart(i)
		c.WaitServing(t)
		id := c.ID(i)
		eventually(t, "the upgraded node's announcement is recorded", func() bool {
			nd, ok := c.FSM(c.WaitForLeader(t)).Node(id)
			return ok && nd.MaxSchema == fsm.SchemaVersion
		})
	}
	upgrade(0)
	upgrade(1)
	// An upgraded leader, which would batch if the old member let it.
	if err := c.TransferLeadership(0); err != nil {
		t.Logf("leadership stays on node %d: %v", c.Leader(), err)
	}

	jump(1)
	waitVersions(t, c, ids, 2)
	if entries, _ := stormEntries(c.FSM(0), ids); entries != n {
		t.Fatalf("with a schema-3 member the storm took %d entries, want one per key (%d)", entries, n)
	}

	upgrade(2)
	jump(2)
	waitVersions(t, c, ids, 3)
	entries, largest := stormEntries(c.FSM(0), ids)
	if largest < 2 {
		t.Fatalf("once every member knows RotateKeys the storm took %d entries, none with more than one rotation", entries)
	}
	t.Logf("after the upgrade: %d entries for %d rotations", entries, n)
	c.WaitConverged(t)
}
