package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftkms/raftkms/keycrypto"
)

// TestServeExitsOnWrongRootKey: a node started with another root key file
// than the cluster's, joining a running cluster, exits non-zero with a
// message naming both root keys.
func TestServeExitsOnWrongRootKey(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four kmsd processes")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "kmsd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	keyFile := func(name string) (string, *keycrypto.RootKey) {
		t.Helper()
		key, err := exec.Command(bin, "gen-root-key").Output()
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, key, 0o600); err != nil {
			t.Fatal(err)
		}
		root, err := keycrypto.ParseRootKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return f, root
	}
	clusterKey, clusterRoot := keyFile("cluster.key")
	wrongKey, wrongRoot := keyFile("wrong.key")

	const n = 3
	grpcAddrs, raftAddrs, peers := make([]string, n+1), make([]string, n+1), make([]string, n)
	for i := range n + 1 {
		grpcAddrs[i], raftAddrs[i] = freePort(t), freePort(t)
		if i < n {
			peers[i] = fmt.Sprintf("kms%d=%s", i+1, raftAddrs[i])
		}
	}
	var procs []*exec.Cmd
	t.Cleanup(func() {
		for _, p := range procs {
			if p.ProcessState == nil {
				p.Process.Kill()
				p.Wait()
			}
		}
	})
	serve := func(i int, key string, extra ...string) (*exec.Cmd, *syncBuffer) {
		t.Helper()
		args := append([]string{"serve", "--node-id", fmt.Sprintf("kms%d", i+1), "--grpc-addr", grpcAddrs[i], "--raft-addr", raftAddrs[i],
			"--data-dir", filepath.Join(dir, fmt.Sprintf("kms%d", i+1)), "--root-key-file", key, "--log-level", "error"}, extra...)
		cmd := exec.Command(bin, args...)
		var stderr syncBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, cmd)
		return cmd, &stderr
	}
	for i := range n {
		serve(i, clusterKey, "--peers", strings.Join(peers, ","))
	}
	for i := range n {
		deadline := time.Now().Add(30 * time.Second)
		for exec.Command(bin, "health", "--grpc-addr", grpcAddrs[i], "--timeout", "1s").Run() != nil {
			if time.Now().After(deadline) {
				t.Fatalf("node %d never became healthy", i+1)
			}
			time.Sleep(100 * time.Millisecond) // poll interval
		}
	}

	cmd, stderr := serve(n, wrongKey, "--join", grpcAddrs[0])
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if cmd.ProcessState.ExitCode() == 0 {
			t.Fatalf("kmsd serve with the wrong root key exited 0 (%v)", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("kmsd serve with the wrong root key still runs; stderr:\n%s", stderr)
	}
	msg := stderr.String()
	for _, want := range []string{"root key", wrongRoot.ID(), clusterRoot.ID(), "start it with the cluster's root key file"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("stderr does not say %q:\n%s", want, msg)
		}
	}
}
