package compose

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestComposeRollingRestart restarts the three containers one after the
// other (docker restart: SIGTERM, then start, as an upgrade replaces a
// binary) while keys rotate and the other two nodes keep encrypting and
// decrypting. Every write is acknowledged through the nodes that are up,
// every restarted node rejoins and catches up, and at the end the nodes
// agree on one digest, every rotation happened once, and every ciphertext
// made during the restarts decrypts on every node. The test logs how many
// terms each restart cost (an election is one term; pre-vote keeps a
// restarted follower from forcing more).
func TestComposeRollingRestart(t *testing.T) {
	composeCmd := requireDocker(t)
	start := time.Now()
	h := newHarness(t, composeCmd)
	h.up()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	w := &workload{h: h, t: t, rng: rand.New(rand.NewPCG(seed, seed))}

	keys := w.createKeys("rolling")
	w.waitVersions(keys, services, nil, 1, "the first automatic rotation")
	for _, svc := range services {
		others := slices.DeleteFunc(slices.Clone(services), func(s string) bool { return s == svc })
		before, err := h.status(others[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.cmd(cmdTimeout, "docker", "restart", "-t", "10", h.containerID(svc)); err != nil {
			t.Fatal(err)
		}
		// Writes through the others while the node comes back.
		for round := 0; round < 3; round++ {
			a, b := others[round%2], others[(round+1)%2]
			for _, k := range keys {
				w.decrypt(w.encrypt(k, a, "rolling/"+svc), b)
			}
		}
		w.waitRejoined(svc, others)
		after, err := h.status(others[0])
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("restart of %s: term %d -> %d", svc, before.Term, after.Term)
		for _, k := range keys {
			w.encrypt(k, svc, "rolling/"+svc+"/after")
		}
	}
	w.waitVersions(keys, services, w.versions(keys, services), 1, "a rotation after the restarts")
	for _, k := range keys {
		if err := h.kmsctl(nil, services, "disable-key-rotation", "--key-id", k); err != nil {
			t.Fatal(err)
		}
	}
	st := h.waitConverged(60 * time.Second)
	t.Logf("converged at index %d, digest %s…", st.AppliedIndex, st.StateDigest[:16])
	w.checkRotations()
	w.checkDecryptEverywhere()
	t.Logf("%d keys, %d ciphertexts; total %s", len(w.keys), len(w.sealed), time.Since(start).Round(time.Second))
}
