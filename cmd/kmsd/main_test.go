package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkms/raftkms/keycrypto"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

func TestParseFlagsFromEnvironment(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	id := fs.String("node-id", "", "")
	minRot := fs.String("min-rotation-period", "", "")
	t.Setenv("RAFTKMS_NODE_ID", "from-env")
	t.Setenv("RAFTKMS_MIN_ROTATION_PERIOD", "2s")
	if err := parseFlags(fs, []string{"--min-rotation-period", "5s"}); err != nil {
		t.Fatal(err)
	}
	if *id != "from-env" || *minRot != "5s" {
		t.Fatalf("node-id=%q min-rotation-period=%q: flags must win over the environment, which fills the rest", *id, *minRot)
	}
	if err := parseFlags(flag.NewFlagSet("t", flag.ContinueOnError), []string{"stray"}); err == nil {
		t.Fatal("stray argument accepted")
	}
}

func TestParsePeersAndDurations(t *testing.T) {
	p, err := parsePeers("kms1=10.0.0.1:7101, kms2=kms2:7101,kms3=[::1]:7101")
	if err != nil || len(p) != 3 || p[1].ID != "kms2" || p[1].Addr != "kms2:7101" || p[2].Addr != "[::1]:7101" {
		t.Fatalf("parsePeers = %v, %v", p, err)
	}
	for _, bad := range []string{"kms1", "=a:1", "kms1=", "a=b:1,a=c:1"} {
		if _, err := parsePeers(bad); err == nil {
			t.Errorf("parsePeers(%q) accepted", bad)
		}
	}
	for in, want := range map[string]time.Duration{"2s": 2 * time.Second, "90d": 90 * 24 * time.Hour, "36h": 36 * time.Hour} {
		if got, err := parseDuration(in); err != nil || got != want {
			t.Errorf("parseDuration(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "0s", "-1s", "xd", "0d", "soon"} {
		if _, err := parseDuration(bad); err == nil {
			t.Errorf("parseDuration(%q) accepted", bad)
		}
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestServeThreeProcesses runs three `kmsd serve` processes with the same
// --peers, uses the cluster, kills one node with SIGKILL and restarts it
// from its data directory: it rejoins and serves again.
func TestServeThreeProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs kmsd processes; skipped in -short mode")
	}
	t.Run("TLS", func(t *testing.T) { serveThree(t, true) })
	// With nothing but the flags of DESIGN's `kmsd serve` on loopback.
	t.Run("loopback without TLS", func(t *testing.T) { serveThree(t, false) })
}

func serveThree(t *testing.T, useTLS bool) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "kmsd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	key, err := exec.Command(bin, "gen-root-key").Output()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "root.key")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	certs := filepath.Join(dir, "certs")
	if out, err := exec.Command(bin, "gen-certs", "--out", certs, "--nodes", "kms1,kms2,kms3", "--clients", "admin").CombinedOutput(); err != nil {
		t.Fatalf("gen-certs: %v\n%s", err, out)
	}
	cert := func(name string) []string {
		if !useTLS {
			return nil
		}
		return []string{"--tls-cert", filepath.Join(certs, name+".pem"), "--tls-key", filepath.Join(certs, name+"-key.pem"),
			"--tls-ca", filepath.Join(certs, "ca.pem")}
	}
	const n = 3
	grpcAddrs, raftAddrs, peers := make([]string, n), make([]string, n), make([]string, n)
	for i := range n {
		grpcAddrs[i], raftAddrs[i] = freePort(t), freePort(t)
		peers[i] = fmt.Sprintf("kms%d=%s", i+1, raftAddrs[i])
	}
	procs := make([]*exec.Cmd, n)
	start := func(i int) {
		t.Helper()
		cmd := exec.Command(bin, "serve", "--grpc-addr", grpcAddrs[i], "--raft-addr", raftAddrs[i],
			"--data-dir", filepath.Join(dir, fmt.Sprintf("kms%d", i+1)), "--root-key-file", keyFile,
			"--peers", strings.Join(peers, ","), "--log-level", "warn", "--admin-identities", "admin")
		cmd.Args = append(cmd.Args, cert(fmt.Sprintf("kms%d", i+1))...)
		cmd.Env = append(os.Environ(), fmt.Sprintf("RAFTKMS_NODE_ID=kms%d", i+1)) // the ID comes from the environment
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs[i] = cmd
	}
	t.Cleanup(func() {
		for _, p := range procs {
			if p != nil && p.ProcessState == nil {
				p.Process.Kill()
				p.Wait()
			}
		}
	})
	waitHealthy := func(i int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for exec.Command(bin, append([]string{"health", "--grpc-addr", grpcAddrs[i], "--timeout", "1s"}, cert("admin")...)...).Run() != nil {
			if time.Now().After(deadline) {
				t.Fatalf("node %d never became healthy", i+1)
			}
			time.Sleep(100 * time.Millisecond) // poll interval
		}
	}
	for i := range n {
		start(i)
	}
	for i := range n {
		waitHealthy(i)
	}
	kms := func(i int) kmsv1.KeyManagementServiceClient {
		pair, err := tls.LoadX509KeyPair(filepath.Join(certs, "admin.pem"), filepath.Join(certs, "admin-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		caPEM, _ := os.ReadFile(filepath.Join(certs, "ca.pem"))
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS13})
		if !useTLS {
			creds = insecure.NewCredentials()
		}
		cc, err := grpc.NewClient(grpcAddrs[i], grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return kmsv1.NewKeyManagementServiceClient(cc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	created, err := kms(1).CreateKey(ctx, &kmsv1.CreateKeyRequest{Description: "processes"})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := kms(0).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: created.KeyMetadata.KeyId, Plaintext: []byte("hi")})
	if err != nil {
		t.Fatal(err)
	}
	// SIGKILL node 3 and restart it from its data directory.
	procs[2].Process.Kill()
	procs[2].Wait()
	start(2)
	waitHealthy(2)
	var dec *kmsv1.DecryptResponse
	deadline := time.Now().Add(20 * time.Second)
	for {
		dec, err = kms(2).Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // poll interval
	}
	if err != nil || string(dec.Plaintext) != "hi" {
		t.Fatalf("decrypt on the restarted node: %v", err)
	}
	// SIGTERM shuts a node down cleanly with exit code 0.
	procs[0].Process.Signal(os.Interrupt)
	if err := procs[0].Wait(); err != nil {
		t.Fatalf("kmsd exited with %v after SIGINT", err)
	}
}

// TestServeRefusesInsecureOffLoopback: without TLS a node binds only
// loopback addresses, with or without --insecure.
func TestServeRefusesInsecureOffLoopback(t *testing.T) {
	dir := t.TempDir()
	base := []string{"serve", "--node-id", "n1", "--data-dir", dir, "--root-key-file", filepath.Join(dir, "none"),
		"--peers", "n1=127.0.0.1:1"}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--grpc-addr", "0.0.0.0:7001", "--raft-addr", "127.0.0.1:0"}, "no TLS configured"},
		{[]string{"--grpc-addr", "127.0.0.1:0", "--raft-addr", "kms1:7101"}, "no TLS configured"},
		{[]string{"--grpc-addr", "0.0.0.0:7001", "--raft-addr", "127.0.0.1:0", "--insecure"}, "only binds loopback"},
		{[]string{"--grpc-addr", "127.0.0.1:0", "--raft-addr", "10.1.2.3:7101", "--insecure"}, "only binds loopback"},
		{[]string{"--grpc-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--insecure", "--tls-cert", "x"}, "exclude each other"},
	}
	for _, c := range cases {
		stderr := captureStderr(t, func() {
			if code := run(append(append([]string{}, base...), c.args...)); code != 2 {
				t.Errorf("%v: exit %d, want 2", c.args, code)
			}
		})
		if !strings.Contains(stderr, c.want) {
			t.Errorf("%v: stderr %q does not say %q", c.args, stderr, c.want)
		}
	}
}

func captureStderr(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = w
	fn()
	os.Stderr = old
	w.Close()
	b, _ := io.ReadAll(r)
	return string(b)
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRootKeyFile: `gen-root-key -o` creates the key file with mode 0600
// and never replaces an existing one; `serve` warns, naming the file and its
// mode, when the file is open to group or others, and not when it is 0600.
func TestRootKeyFile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs kmsd processes; skipped in -short mode")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "kmsd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	keyFile := filepath.Join(dir, "root.key")
	var stdout, stderr strings.Builder
	gen := exec.Command(bin, "gen-root-key", "-o", keyFile)
	gen.Stdout, gen.Stderr = &stdout, &stderr
	if err := gen.Run(); err != nil {
		t.Fatalf("gen-root-key -o: %v\n%s", err, stderr.String())
	}
	st, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %#o, want 0600", st.Mode().Perm())
	}
	written, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	root, err := keycrypto.ParseRootKey(written)
	if err != nil {
		t.Fatalf("written key does not parse: %v", err)
	}
	if stdout.Len() != 0 || strings.Contains(stderr.String(), strings.TrimSpace(string(written))) {
		t.Fatalf("the key went to the terminal: stdout %q, stderr %q", stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), root.ID()) {
		t.Errorf("gen-root-key -o does not name the new key's ID: %q", stderr.String())
	}
	out, err := exec.Command(bin, "gen-root-key", "--output", keyFile).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "already exists") {
		t.Fatalf("second gen-root-key -o: %v, %q; want a refusal", err, out)
	}
	if again, _ := os.ReadFile(keyFile); string(again) != string(written) {
		t.Fatal("an existing root key file was overwritten")
	}
	if key, err := exec.Command(bin, "gen-root-key").Output(); err != nil {
		t.Fatal(err)
	} else if _, err := keycrypto.ParseRootKey(key); err != nil {
		t.Fatalf("gen-root-key to stdout: %v", err)
	}

	// serve runs one node until it logs that it serves, and returns its log.
	serve := func(name string) string {
		t.Helper()
		raft := freePort(t)
		cmd := exec.Command(bin, "serve", "--node-id", "n1", "--grpc-addr", freePort(t), "--raft-addr", raft,
			"--data-dir", filepath.Join(dir, name), "--root-key-file", keyFile, "--peers", "n1="+raft, "--insecure")
		var log syncBuffer
		cmd.Stderr = &log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		defer func() {
			cmd.Process.Kill()
			<-exited
		}()
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(log.String(), "kmsd serving") {
			select {
			case err := <-exited:
				exited <- err
				t.Fatalf("kmsd serve exited: %v\n%s", err, log.String())
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("kmsd serve did not start serving:\n%s", log.String())
			}
		}
		return log.String()
	}
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	log := serve("open")
	var warning string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "root key file is readable or writable by group or others") {
			warning = line
		}
	}
	if !strings.Contains(warning, "[WARN]") || !strings.Contains(warning, "file="+keyFile) || !strings.Contains(warning, "mode=0644") {
		t.Fatalf("no warning naming the file and its mode for a 0644 root key file:\n%s", log)
	}
	if !strings.Contains(log, "root_key_id="+root.ID()) || strings.Contains(log, strings.TrimSpace(string(written))) {
		t.Fatalf("the log does not name the root key by its ID alone:\n%s", log)
	}
	if err := os.Chmod(keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	if log := serve("closed"); strings.Contains(log, "root key file is readable") {
		t.Fatalf("warning for a 0600 root key file:\n%s", log)
	}
}
