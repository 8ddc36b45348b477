package compose

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// rotationPeriod is the automatic rotation period of the test's keys
	// (docker-compose.test.yml lowers the floor to 1s).
	rotationPeriod = 2 * time.Second
	// keysPerPhase keys are made, and rotate, in each phase.
	keysPerPhase = 3
	// rotationsWhileOut is how many automatic rotations every key must get
	// from the survivors while the old leader is out.
	rotationsWhileOut = 2
)

// TestComposeClusterSurvivesLeaderFaults runs the compose cluster from the
// repository's files and, while keys rotate every two seconds, first kills
// the leader's container and starts it again, then cuts the (new) leader off
// the network and reconnects it. After each fault it checks that the three
// nodes converge on one applied index and state digest, that every key's
// versions are 2..n, each made once by an automatic rotation at least about
// a period after the one before, and that every ciphertext made so far
// decrypts on every node.
func TestComposeClusterSurvivesLeaderFaults(t *testing.T) {
	composeCmd := requireDocker(t)
	start := time.Now()
	h := newHarness(t, composeCmd)
	h.up()
	t.Logf("cluster healthy %s after the start of the test", time.Since(start).Round(time.Second))
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("RAFTKMS_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("seed %d (RAFTKMS_SEED=%d repeats the plaintexts and choices)", seed, seed)
	w := &workload{h: h, t: t, rng: rand.New(rand.NewPCG(seed, seed))}

	w.phase(fault{
		name: "crash",
		inject: func(svc string) {
			if _, err := h.cmd(cmdTimeout, "docker", "kill", h.containerID(svc)); err != nil {
				t.Fatal(err)
			}
		},
		heal: func(svc string) {
			if _, err := h.cmd(cmdTimeout, "docker", "start", h.containerID(svc)); err != nil {
				t.Fatal(err)
			}
		},
	})

	var ip string
	w.phase(fault{
		name: "partition",
		inject: func(svc string) {
			id := h.containerID(svc)
			ip = h.ipOf(id)
			if _, err := h.cmd(cmdTimeout, "docker", "network", "disconnect", h.network, id); err != nil {
				t.Fatal(err)
			}
		},
		whileOut: func(svc string) {
			// Cut off, the old leader must step down once its lease runs
			// out: ask it over its own loopback.
			deadline := time.Now().Add(30 * time.Second)
			for {
				st, err := h.execStatus(svc)
				if err == nil && st.State != "Leader" {
					t.Logf("partition: isolated %s is %s (term %d, applied %d)", svc, st.State, st.Term, st.AppliedIndex)
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("isolated %s still leads after 30s: %+v %v", svc, st, err)
				}
				time.Sleep(300 * time.Millisecond)
			}
		},
		heal: func(svc string) {
			// Compose's service alias does not survive a disconnect; give it
			// back so that the other nodes resolve the service name again.
			id := h.containerID(svc)
			if _, err := h.cmd(cmdTimeout, "docker", "network", "connect", "--alias", svc, h.network, id); err != nil {
				t.Fatal(err)
			}
			if now := h.ipOf(id); now != ip {
				// kmsd binds its Raft address once, at start: on a new IP
				// the node cannot be reached until it restarts.
				t.Fatalf("%s came back on %s, not on its old address %s: kmsd still listens for Raft on the old one", svc, now, ip)
			}
		},
	})

	t.Logf("%d keys, %d ciphertexts, %d rotations checked; total %s",
		len(w.keys), len(w.sealed), w.rotations, time.Since(start).Round(time.Second))
}

// fault takes a node out of the cluster and brings it back.
type fault struct {
	name     string
	inject   func(svc string)
	whileOut func(svc string) // optional check while the node is out
	heal     func(svc string)
}

// workload is what the test has made so far and checks at every step.
type workload struct {
	h         *harness
	t         *testing.T
	rng       *rand.Rand
	keys      []string // every key created, in order
	sealed    []sealed // every ciphertext made
	rotations int      // rotations seen in the last check
}

// sealed is one ciphertext and what it must decrypt to.
type sealed struct {
	keyID     string
	plaintext []byte
	blob      string // base64, as kmsctl prints it
	origin    string // node and phase, for messages
}

// phase makes rotating keys, encrypts through every node, takes the leader
// out with f while the survivors keep encrypting, decrypting and rotating,
// brings it back, and checks the cluster.
func (w *workload) phase(f fault) {
	t, h := w.t, w.h
	t.Helper()
	start := time.Now()
	keys := w.createKeys(f.name)
	for _, svc := range services {
		for _, k := range keys {
			w.encrypt(k, svc, f.name+"/before")
		}
	}
	// Fault only once the scheduler is seen at work: every key rotated.
	w.waitVersions(keys, services, nil, 1, "the first automatic rotation")

	leader := h.waitLeader(30*time.Second, services...)
	survivors := slices.DeleteFunc(slices.Clone(services), func(s string) bool { return s == leader })
	base := w.versions(keys, services)
	t.Logf("%s: leader %s, versions %v; taking it out", f.name, leader, base)
	f.inject(leader)
	out := time.Now()

	// The survivors elect a leader and go on rotating; every round encrypts
	// through one survivor and decrypts through the other, plus one older
	// ciphertext.
	deadline := time.Now().Add(60 * time.Second)
	for round := 0; ; round++ {
		a, b := survivors[round%2], survivors[(round+1)%2]
		for _, k := range keys {
			s := w.encrypt(k, a, f.name+"/out")
			w.decrypt(s, b)
		}
		w.decrypt(w.sealed[w.rng.IntN(len(w.sealed))], a)
		if w.advanced(keys, survivors, base, rotationsWhileOut) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: keys did not rotate %d more times within 60s with %s out (versions %v, before %v)",
				f.name, rotationsWhileOut, leader, w.versions(keys, survivors), base)
		}
		time.Sleep(100 * time.Millisecond)
	}
	newLeader := h.waitLeader(30*time.Second, survivors...)
	t.Logf("%s: %s led the survivors; rotations went on for %s without %s",
		f.name, newLeader, time.Since(out).Round(100*time.Millisecond), leader)
	if f.whileOut != nil {
		f.whileOut(leader)
	}

	f.heal(leader)
	w.waitRejoined(leader, survivors)
	for _, svc := range services {
		for _, k := range keys {
			w.encrypt(k, svc, f.name+"/after")
		}
	}
	// One more rotation with every node back, then stop rotating so that
	// the nodes can agree on one applied index.
	w.waitVersions(keys, services, w.versions(keys, services), 1, "a rotation after the heal")
	for _, k := range keys {
		if err := h.kmsctl(nil, services, "disable-key-rotation", "--key-id", k); err != nil {
			t.Fatal(err)
		}
	}
	st := h.waitConverged(60 * time.Second)
	t.Logf("%s: converged at index %d, digest %s…", f.name, st.AppliedIndex, st.StateDigest[:16])
	w.checkRotations()
	w.checkDecryptEverywhere()
	t.Logf("%s: phase done in %s", f.name, time.Since(start).Round(100*time.Millisecond))
}

// createKeys makes keysPerPhase keys that rotate every rotationPeriod.
func (w *workload) createKeys(phase string) []string {
	t, h := w.t, w.h
	t.Helper()
	var keys []string
	for i := range keysPerPhase {
		var doc struct{ KeyMetadata struct{ KeyID string } }
		via := services[i%len(services)]
		if err := h.kmsctl(&doc, []string{via}, "create-key", "--description", "compose test "+phase); err != nil {
			t.Fatal(err)
		}
		if doc.KeyMetadata.KeyID == "" {
			t.Fatalf("create-key through %s gave no KeyId", via)
		}
		if err := h.kmsctl(nil, []string{via}, "enable-key-rotation", "--key-id", doc.KeyMetadata.KeyID,
			"--rotation-period", rotationPeriod.String()); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, doc.KeyMetadata.KeyID)
	}
	w.keys = append(w.keys, keys...)
	return keys
}

// encrypt encrypts fresh random plaintext under key through one node and
// remembers the ciphertext.
func (w *workload) encrypt(key, svc, phase string) sealed {
	t := w.t
	t.Helper()
	pt := make([]byte, 8+w.rng.IntN(56))
	for i := range pt {
		pt[i] = byte(w.rng.Uint32())
	}
	var doc struct{ CiphertextBlob string }
	if err := w.h.kmsctlRetry(&doc, []string{svc}, "encrypt", "--key-id", key,
		"--plaintext", base64.StdEncoding.EncodeToString(pt)); err != nil {
		t.Fatalf("%s: %v", phase, err)
	}
	if doc.CiphertextBlob == "" {
		t.Fatalf("%s: encrypt through %s gave no CiphertextBlob", phase, svc)
	}
	s := sealed{keyID: key, plaintext: pt, blob: doc.CiphertextBlob, origin: svc + " in " + phase}
	w.sealed = append(w.sealed, s)
	return s
}

// decrypt decrypts through one node and fails the test on a wrong answer.
func (w *workload) decrypt(s sealed, svc string) {
	w.t.Helper()
	if err := w.tryDecrypt(s, svc); err != nil {
		w.t.Fatal(err)
	}
}

func (w *workload) tryDecrypt(s sealed, svc string) error {
	var doc struct {
		KeyID     string `json:"KeyId"`
		Plaintext []byte
	}
	if err := w.h.kmsctlRetry(&doc, []string{svc}, "decrypt", "--ciphertext-blob", s.blob); err != nil {
		return fmt.Errorf("decrypting on %s a ciphertext made by %s: %w", svc, s.origin, err)
	}
	if !bytes.Equal(doc.Plaintext, s.plaintext) || !strings.HasSuffix(doc.KeyID, s.keyID) {
		return fmt.Errorf("decrypting on %s a ciphertext made by %s under %s: got key %s plaintext %x, want %x",
			svc, s.origin, s.keyID, doc.KeyID, doc.Plaintext, s.plaintext)
	}
	return nil
}

// versions is every key's current version as the first answering node sees it.
func (w *workload) versions(keys, svcs []string) map[string]uint32 {
	t := w.t
	t.Helper()
	v := map[string]uint32{}
	for _, k := range keys {
		var doc struct {
			KeyMetadata struct {
				KeyState          string
				CurrentKeyVersion uint32
			}
		}
		if err := w.h.kmsctlRetry(&doc, svcs, "describe-key", "--key-id", k); err != nil {
			t.Fatal(err)
		}
		v[k] = doc.KeyMetadata.CurrentKeyVersion
	}
	return v
}

// advanced reports whether every key is at least n versions past base.
func (w *workload) advanced(keys, svcs []string, base map[string]uint32, n uint32) bool {
	w.t.Helper()
	for k, v := range w.versions(keys, svcs) {
		if v < max(base[k], 1)+n {
			return false
		}
	}
	return true
}

// waitVersions waits until every key is n versions past base (version 1
// for a key base does not hold), which only the rotation scheduler can do.
func (w *workload) waitVersions(keys, svcs []string, base map[string]uint32, n uint32, what string) {
	t := w.t
	t.Helper()
	limit := 10*rotationPeriod + 30*time.Second
	deadline := time.Now().Add(limit)
	for !w.advanced(keys, svcs, base, n) {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s (period %s); versions %v: is the rotation scheduler running?",
				limit, what, rotationPeriod, w.versions(keys, svcs))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitRejoined waits until a node that was out is healthy, follows the
// survivors' leader and has caught up with what they had applied.
func (w *workload) waitRejoined(svc string, survivors []string) {
	t, h := w.t, w.h
	t.Helper()
	h.waitHealthy(90*time.Second, svc)
	ref, err := h.status(survivors[0])
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := h.status(svc)
		if err == nil && st.LeaderID != "" && st.AppliedIndex >= ref.AppliedIndex {
			t.Logf("%s rejoined: %s, leader %s, applied %d", svc, st.State, st.LeaderID, st.AppliedIndex)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not catch up with index %d within 60s: %+v %v", svc, ref.AppliedIndex, st, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// rotationDoc is `kmsctl list-key-rotations`.
type rotationDoc struct {
	Rotations []struct {
		KeyID        string `json:"KeyId"`
		RotationDate time.Time
		RotationType string
		KeyVersion   uint32
	}
}

// checkRotations checks every key's rotation history on every node: the
// nodes agree, the versions are exactly 2..current, each made once by an
// automatic rotation, and rotations are about a period apart or more (a
// rotation proposed twice — by an old and a new leader — would show as a
// repeated version or as two close together).
func (w *workload) checkRotations() {
	t, h := w.t, w.h
	t.Helper()
	w.rotations = 0
	current := w.versions(w.keys, services)
	for _, k := range w.keys {
		var docs []rotationDoc
		for _, svc := range services {
			var d rotationDoc
			if err := h.kmsctl(&d, []string{svc}, "list-key-rotations", "--key-id", k); err != nil {
				t.Fatal(err)
			}
			docs = append(docs, d)
		}
		for i := 1; i < len(docs); i++ {
			if fmt.Sprint(docs[i]) != fmt.Sprint(docs[0]) {
				t.Errorf("key %s: %s and %s list different rotations:\n%v\n%v", k, services[0], services[i], docs[0], docs[i])
			}
		}
		rs := docs[0].Rotations
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].KeyVersion < rs[j].KeyVersion })
		if want := int(current[k]) - 1; len(rs) != want {
			t.Errorf("key %s is at version %d but lists %d rotations, want %d: %+v", k, current[k], len(rs), want, rs)
		}
		for i, r := range rs {
			if want := uint32(i + 2); r.KeyVersion != want {
				t.Errorf("key %s: rotation %d made version %d, want %d (versions not contiguous, or one made twice): %+v",
					k, i+1, r.KeyVersion, want, rs)
				break
			}
			if r.RotationType != "AUTOMATIC" {
				t.Errorf("key %s: version %d came from a %s rotation, want AUTOMATIC", k, r.KeyVersion, r.RotationType)
			}
			if i > 0 {
				if gap := r.RotationDate.Sub(rs[i-1].RotationDate); gap < rotationPeriod*9/10 {
					t.Errorf("key %s: versions %d and %d rotated %s apart, period %s: a rotation was doubled",
						k, rs[i-1].KeyVersion, r.KeyVersion, gap, rotationPeriod)
				}
			}
		}
		w.rotations += len(rs)
	}
	if t.Failed() {
		t.FailNow()
	}
}

// checkDecryptEverywhere decrypts every ciphertext made so far on every
// node, one worker per node.
func (w *workload) checkDecryptEverywhere() {
	t := w.t
	t.Helper()
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, svc := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, s := range w.sealed {
				if err := w.tryDecrypt(s, svc); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d decryptions failed:\n%v", len(errs), len(w.sealed)*len(services), errorsJoin(errs))
	}
}
