package testcluster_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/keycrypto"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/raftnode"
	"github.com/raftkms/raftkms/server"
	"github.com/raftkms/raftkms/testcluster"
	"google.golang.org/grpc/codes"
)

// sealedCiphertext is one acknowledged Encrypt and what it must decrypt to.
type sealedCiphertext struct {
	keyID      string
	plaintext  []byte
	ciphertext []byte
}

// TestDisasterRecovery loses every node of a cluster and brings it back
// from a saved snapshot: a workload (keys, on-demand rotations, aliases, a
// disabled key, ciphertexts under every version) runs, a snapshot is saved
// through a follower while more keys are being created, every node is killed
// and its data dir wiped, and a new cluster is restored onto new data dirs.
// Every node reports the saved StateDigest before it applies anything new;
// every key acknowledged before the save is back with an identical
// hash-chained history, its aliases, and every ciphertext decrypts.
func TestDisasterRecovery(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI())
	c.WaitServing(t)
	leader := c.WaitForLeader(t)
	follower := (leader + 1) % 3
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var cts []sealedCiphertext
	var keys []string
	encrypt := func(k kmsv1.KeyManagementServiceClient, id string, n int) error {
		pt := []byte(fmt.Sprintf("plaintext %s %d", id, n))
		r, err := k.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: id, Plaintext: pt})
		if err != nil {
			return err
		}
		cts = append(cts, sealedCiphertext{id, pt, r.CiphertextBlob})
		return nil
	}
	for i := 0; i < 12; i++ {
		k := c.KMS(i % 3)
		id := createKey(t, k, fmt.Sprintf("dr-%d", i))
		keys = append(keys, id)
		if err := encrypt(k, id, 0); err != nil {
			t.Fatalf("Encrypt: %v", err)
		}
		for v := 1; v <= i%3; v++ {
			if _, err := k.RotateKeyOnDemand(ctx, &kmsv1.RotateKeyOnDemandRequest{KeyId: id}); err != nil {
				t.Fatalf("RotateKeyOnDemand: %v", err)
			}
			if err := encrypt(k, id, v); err != nil {
				t.Fatalf("Encrypt: %v", err)
			}
		}
		if i%4 == 0 {
			if _, err := k.CreateAlias(ctx, &kmsv1.CreateAliasRequest{AliasName: fmt.Sprintf("alias/dr-%d", i), TargetKeyId: id}); err != nil {
				t.Fatalf("CreateAlias: %v", err)
			}
		}
	}
	if _, err := c.KMS(0).DisableKey(ctx, &kmsv1.DisableKeyRequest{KeyId: keys[5]}); err != nil {
		t.Fatalf("DisableKey: %v", err)
	}

	// Writes go on while the snapshot is saved: new keys only, so the keys
	// above keep the histories they have now.
	stop := make(chan struct{})
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
			if _, err := c.KMS(n%3).CreateKey(ctx, &kmsv1.CreateKeyRequest{Description: "during save"}); err != nil && ctx.Err() != nil {
				return
			}
		}
	}()
	path := filepath.Join(t.TempDir(), "cluster.snap")
	info := c.SaveSnapshot(t, follower, path)
	close(stop)
	wg.Wait()
	if info.Index == 0 || info.Term == 0 || len(info.StateDigest) != 32 {
		t.Fatalf("snapshot info %v lacks index, term or digest", info)
	}
	histories := map[string][]fsm.HistoryEntry{}
	for _, id := range keys {
		h, ok := c.FSM(leader).History(id)
		if !ok {
			t.Fatalf("key %s has no history", id)
		}
		histories[id] = h
	}
	root := c.Root()

	for i := 0; i < 3; i++ {
		c.Kill(i)
		if err := os.RemoveAll(c.DataDir(i)); err != nil {
			t.Fatal(err)
		}
	}

	backup, err := raftnode.OpenBackup(path)
	if err != nil {
		t.Fatalf("OpenBackup: %v", err)
	}
	logs := &lockedBuffer{}
	r := testcluster.New(t, 3, testcluster.WithLogLevel(hclog.Info), testcluster.WithLogCapture(logs),
		testcluster.WithAPI(testcluster.WithRootKeys(func(int) *keycrypto.RootKey { return root }), testcluster.WithRestore(backup)))
	r.WaitServing(t)

	// Each node restored the saved state before applying anything new.
	want := "restored the saved snapshot"
	digest := "state_digest=" + hex.EncodeToString(info.StateDigest)
	reported := 0
	for _, line := range strings.Split(string(logs.Bytes()), "\n") {
		if strings.Contains(line, want) {
			if !strings.Contains(line, digest) {
				t.Fatalf("a restored node reports another digest: %s (want %s)", line, digest)
			}
			reported++
		}
	}
	if reported != 3 {
		t.Fatalf("%d nodes reported restoring the saved snapshot, want 3", reported)
	}

	r.WaitConverged(t)
	for i := 0; i < 3; i++ {
		for _, id := range keys {
			h, ok := r.FSM(i).History(id)
			if !ok {
				t.Fatalf("node %d: acknowledged key %s is missing after the restore", i, id)
			}
			if !equalHistories(h, histories[id]) {
				t.Fatalf("node %d: key %s's history differs after the restore", i, id)
			}
		}
		for _, ct := range cts {
			d, err := r.KMS(i).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: ct.ciphertext})
			if ct.keyID == keys[5] {
				wantErr(t, "Decrypt under the disabled key", err, codes.FailedPrecondition, "DisabledException")
				continue
			}
			if err != nil {
				t.Fatalf("node %d: Decrypt under %s after the restore: %v", i, ct.keyID, err)
			}
			if !bytes.Equal(d.Plaintext, ct.plaintext) || !strings.HasSuffix(d.KeyId, "/"+ct.keyID) {
				t.Fatalf("node %d: Decrypt gave %q under %s, want %q under %s", i, d.Plaintext, d.KeyId, ct.plaintext, ct.keyID)
			}
		}
	}
	desc, err := r.KMS(1).DescribeKey(ctx, &kmsv1.DescribeKeyRequest{KeyId: "alias/dr-4"})
	if err != nil || desc.KeyMetadata.KeyId != keys[4] {
		t.Fatalf("alias/dr-4 after the restore: %v, %v", desc, err)
	}
	// The restored cluster takes writes, at indexes after the saved one.
	createKey(t, r.KMS(2), "after restore")
	if got := r.Node(r.WaitForLeader(t)).LastIndex(); got <= info.Index {
		t.Fatalf("last index %d after a write, want more than the saved %d", got, info.Index)
	}
}

func equalHistories(a, b []fsm.HistoryEntry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestRestoreRefusals: a snapshot saved under another root key, a node
// whose data dir already holds Raft state, and a damaged file are refused
// with errors that say so.
func TestRestoreRefusals(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI())
	c.WaitServing(t)
	createKey(t, c.KMS(0), "refusals")
	path := filepath.Join(t.TempDir(), "cluster.snap")
	c.SaveSnapshot(t, 0, path)
	backup, err := raftnode.OpenBackup(path)
	if err != nil {
		t.Fatalf("OpenBackup: %v", err)
	}

	other, err := keycrypto.GenerateRootKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	start := func(dir string, root *keycrypto.RootKey) error {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		raftLis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		raftAddr := raftLis.Addr().String()
		raftLis.Close()
		srv, err := server.Start(server.Config{NodeID: "r1", Listener: lis, RaftAddr: raftAddr, DataDir: dir,
			RootKey: root, Peers: []raftnode.Peer{{ID: "r1", Addr: raftAddr}}, Restore: backup})
		if err == nil {
			srv.Stop()
		}
		return err
	}
	err = start(t.TempDir(), other)
	if !errors.Is(err, server.ErrRestoreRootKey) || !strings.Contains(err.Error(), backup.RootKeyID) {
		t.Fatalf("restore under another root key: %v, want ErrRestoreRootKey naming %s", err, backup.RootKeyID)
	}
	// A node's own, non-empty data dir.
	c.Kill(1)
	err = start(c.DataDir(1), c.Root())
	if !errors.Is(err, raftnode.ErrRestoreNotEmpty) {
		t.Fatalf("restore onto a data dir with Raft state: %v, want ErrRestoreNotEmpty", err)
	}
	// A flipped byte in the state.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-40] ^= 1
	bad := filepath.Join(t.TempDir(), "bad.snap")
	if err := os.WriteFile(bad, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := raftnode.OpenBackup(bad); !errors.Is(err, raftnode.ErrBadBackup) {
		t.Fatalf("OpenBackup of a damaged file: %v, want ErrBadBackup", err)
	}
	if _, err := raftnode.OpenBackup(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("OpenBackup of a missing file succeeded")
	}
}
