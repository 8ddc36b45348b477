package testcluster_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/rpc"
	"github.com/raftkms/raftkms/testcluster"
	"google.golang.org/grpc/codes"
)

// TestRotationAcrossLeaderKills: 20 keys rotate every 1–2 s for 20 s while
// the leader is killed mid-rotation four times. Afterwards every node holds,
// for every key, versions 1..n with automatic rotations never closer than a
// period (no double rotation) and never further apart than a period plus a
// failover (no lost one); the digests agree; every ciphertext decrypts.
func TestRotationAcrossLeaderKills(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about 25 s; skipped in -short mode")
	}
	seed := chaosSeed(t)
	rng := rand.New(rand.NewPCG(seed, 7))
	c := testcluster.New(t, 3, testcluster.WithAPI(testcluster.WithLimits(rpc.Limits{MinRotationPeriod: time.Second})))
	c.WaitServing(t)
	ctx := apiCtx(t)

	const nKeys, runFor, kills = 20, 20 * time.Second, 4
	keys := make([]string, nKeys)
	periods := map[string]time.Duration{}
	for i := range keys {
		keys[i] = createKey(t, c.KMS(i%3), fmt.Sprintf("rotating-%d", i))
		p := time.Duration(1+i%2) * time.Second
		periods[keys[i]] = p
		must[*kmsv1.EnableKeyRotationResponse](t, "EnableKeyRotation")(c.KMS((i+1)%3).EnableKeyRotation(ctx,
			&kmsv1.EnableKeyRotationRequest{KeyId: keys[i], RotationPeriodSeconds: int64(p / time.Second)}))
	}

	// Clients encrypt through every live node all along.
	type sealed struct {
		key  string
		blob []byte
		pt   string
	}
	var mu sync.Mutex
	var blobs []sealed
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				i := r.IntN(3)
				if !c.Alive(i) {
					continue
				}
				key, pt := keys[r.IntN(nKeys)], fmt.Sprintf("w%d-%d", w, n)
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				resp, err := c.KMS(i).Encrypt(cctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte(pt)})
				cancel()
				if err == nil {
					mu.Lock()
					blobs = append(blobs, sealed{key, resp.CiphertextBlob, pt})
					mu.Unlock()
				}
				time.Sleep(10 * time.Millisecond) // pacing of the load, not a wait
			}
		}()
	}

	versions := func() int {
		l := c.Leader()
		if l < 0 {
			return -1
		}
		n := 0
		c.FSM(l).ForEachKey(func(k *fsm.Key) bool { n += int(k.CurrentVersion()); return true })
		return n
	}
	start := time.Now()
	var outages time.Duration
	for round := range kills {
		// Spread the kills over the run; each comes while rotations are
		// under way (about ten a second across the keys).
		killAt := start.Add(time.Duration(round+1)*runFor/(kills+1) + time.Duration(rng.IntN(1000))*time.Millisecond)
		for time.Now().Before(killAt) {
			time.Sleep(20 * time.Millisecond) // waiting for the kill time
		}
		before := versions()
		deadline := time.Now().Add(testcluster.WaitTimeout)
		for versions() < before+1 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: keys stopped rotating", round)
			}
			time.Sleep(20 * time.Millisecond) // polling
		}
		l := c.WaitForLeader(t)
		down := time.Now()
		c.Kill(l)
		c.WaitForLeader(t)
		outages += time.Since(down)
		t.Logf("round %d: killed leader node %d at %v; new leader after %v", round, l, time.Since(start).Round(time.Millisecond), time.Since(down))
		c.Restart(l)
	}
	for time.Since(start) < runFor {
		time.Sleep(50 * time.Millisecond) // let the run reach its length
	}
	close(stop)
	wg.Wait()
	end := time.Now()
	c.WaitConverged(t)

	// A failover delays a due rotation by at most the time to elect a leader
	// that has caught up; allow a generous bound for a loaded 2-core machine.
	const lateness = 3 * time.Second
	for i := range 3 {
		f := c.FSM(i)
		for _, id := range keys {
			k, _ := f.Key(id)
			period := periods[id]
			var enabledAt int64
			for _, h := range k.History {
				if h.Type == "EnableKeyRotation" {
					enabledAt = h.Time
				}
			}
			prev := enabledAt
			for n, v := range k.Versions {
				if v.Number != uint32(n+1) {
					t.Fatalf("node %d key %s: version %d at position %d", i, id, v.Number, n+1)
				}
				if n == 0 {
					continue
				}
				if v.Type != eventsv1.RotationType_ROTATION_TYPE_AUTOMATIC {
					t.Fatalf("node %d key %s: version %d is %v", i, id, v.Number, v.Type)
				}
				gap := time.Duration(v.CreatedAt - prev)
				if gap < period {
					t.Fatalf("node %d key %s: version %d came %v after the previous rotation; period %v (double rotation)", i, id, v.Number, gap, period)
				}
				if gap > period+lateness {
					t.Fatalf("node %d key %s: version %d came %v after the previous rotation; period %v (a rotation was lost)", i, id, v.Number, gap, period)
				}
				prev = v.CreatedAt
			}
			if gap := end.Sub(time.Unix(0, prev)); gap > period+lateness {
				t.Fatalf("node %d key %s: no rotation in the last %v; period %v", i, id, gap, period)
			}
			rotations := len(k.Versions) - 1
			expect := float64(end.Sub(time.Unix(0, enabledAt))) / float64(period)
			if float64(rotations) > expect+1 {
				t.Fatalf("node %d key %s: %d rotations in %.1f periods", i, id, rotations, expect)
			}
			if i == 0 && id == keys[0] || i == 0 && id == keys[1] {
				t.Logf("key %s (period %v): %d rotations in %.1f periods (%v of failover)", id, period, rotations, expect, outages.Round(time.Millisecond))
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mu.Lock()
	defer mu.Unlock()
	if len(blobs) < 100 {
		t.Fatalf("only %d ciphertexts made during the run", len(blobs))
	}
	for _, b := range blobs {
		for i := range 3 {
			resp, err := c.KMS(i).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: b.blob})
			if err != nil || string(resp.Plaintext) != b.pt {
				t.Fatalf("ciphertext under %s does not decrypt on node %d: %v", b.key, i, err)
			}
		}
	}
	t.Logf("%d ciphertexts decrypt on every node", len(blobs))
}

// TestScheduledDeletionCompletes: when the waiting period ends, the leader's
// scheduler deletes the key; from then on every node treats it as gone,
// while its history stays.
func TestScheduledDeletionCompletes(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI(testcluster.WithLimits(rpc.Limits{MinPendingWindow: time.Second})))
	c.WaitServing(t)
	ctx := apiCtx(t)
	key := createKey(t, c.KMS(0), "short-lived")
	enc := must[*kmsv1.EncryptResponse](t, "Encrypt")(c.KMS(1).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x")}))
	must[*kmsv1.CreateAliasResponse](t, "CreateAlias")(c.KMS(2).CreateAlias(ctx, &kmsv1.CreateAliasRequest{AliasName: "alias/short", TargetKeyId: key}))
	must[*kmsv1.ScheduleKeyDeletionResponse](t, "ScheduleKeyDeletion")(c.KMS(2).ScheduleKeyDeletion(ctx,
		&kmsv1.ScheduleKeyDeletionRequest{KeyId: key, PendingWindowSeconds: 1}))
	deadline := time.Now().Add(testcluster.WaitTimeout)
	for {
		k, _ := c.FSM(c.WaitForLeader(t)).Key(key)
		if k.State == fsm.KeyStateDeleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("key still %v after its waiting period", k.State)
		}
		time.Sleep(50 * time.Millisecond) // polling
	}
	c.WaitConverged(t)
	for i := range 3 {
		k, _ := c.FSM(i).Key(key)
		for _, v := range k.Versions {
			if len(v.Sealed) != 0 {
				t.Fatalf("node %d still holds material of version %d", i, v.Number)
			}
		}
		_, err := c.KMS(i).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob})
		wantErr(t, "decrypt under a deleted key", err, codes.NotFound, "NotFoundException")
		_, err = c.KMS(i).DescribeKey(ctx, &kmsv1.DescribeKeyRequest{KeyId: key})
		wantErr(t, "describe a deleted key", err, codes.NotFound, "NotFoundException")
		_, err = c.KMS(i).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: "alias/short", Plaintext: []byte("x")})
		wantErr(t, "the deleted key's alias", err, codes.NotFound, "NotFoundException")
		ev := must[*kmsv1.ListKeyEventsResponse](t, "ListKeyEvents")(c.KMS(i).ListKeyEvents(ctx, &kmsv1.ListKeyEventsRequest{KeyId: key}))
		if last := ev.Events[len(ev.Events)-1]; last.EventType != "DeleteKey" || last.Principal != "raftkms:scheduler" {
			t.Fatalf("last event = %v", last)
		}
	}
}
