package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftkms/raftkms/pki"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/testcluster"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	kmsapi "k8s.io/kms/apis/v2"
)

func TestK8sPluginFlags(t *testing.T) {
	ok := k8sPluginFlags{listen: "unix:///tmp/kms.sock", keyID: "alias/k8s", endpoints: "127.0.0.1:7001, localhost:7002"}
	cfg, warned, err := ok.clientConfig()
	if err != nil || !warned || len(cfg.Endpoints) != 2 || cfg.Endpoints[1] != "localhost:7002" {
		t.Fatalf("loopback without TLS: %v, warned %v, %v", cfg.Endpoints, warned, err)
	}
	for name, f := range map[string]k8sPluginFlags{
		"no --listen":            {keyID: "alias/k8s", endpoints: "127.0.0.1:7001"},
		"no --key-id":            {listen: ok.listen, endpoints: "127.0.0.1:7001"},
		"no endpoints":           {listen: ok.listen, keyID: "k", endpoints: " , "},
		"remote without TLS":     {listen: ok.listen, keyID: "k", endpoints: "127.0.0.1:7001,kms2.example:7001"},
		"part of the TLS flags":  {listen: ok.listen, keyID: "k", endpoints: "kms1:7001", tls: pkiFiles("ca.pem", "", "")},
		"TLS files that are not": {listen: ok.listen, keyID: "k", endpoints: "kms1:7001", tls: pkiFiles("/nonexistent/ca.pem", "/nonexistent/c.pem", "/nonexistent/k.pem")},
	} {
		if _, _, err := f.clientConfig(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if code := run([]string{"k8s-plugin", "--key-id", "k"}); code != 2 {
		t.Errorf("kmsd k8s-plugin without --listen exits %d, want 2", code)
	}
}

// TestK8sPluginProcess runs `kmsd k8s-plugin` as a process against a
// 3-node cluster: kube-apiserver's client reaches it on its socket, wraps and
// unwraps a DEK, and SIGTERM stops it cleanly, removing the socket.
func TestK8sPluginProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs kmsd; skipped in -short mode")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "kmsd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	c := testcluster.New(t, 3, testcluster.WithAPI())
	c.WaitServing(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key, err := c.KMS(0).CreateKey(ctx, &kmsv1.CreateKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.KMS(0).CreateAlias(ctx, &kmsv1.CreateAliasRequest{AliasName: "alias/k8s", TargetKeyId: key.KeyMetadata.KeyId}); err != nil {
		t.Fatal(err)
	}

	sock := filepath.Join(dir, "kms.sock")
	cmd := exec.Command(bin, "k8s-plugin", "--listen", "unix://"+sock, "--key-id", "alias/k8s", "--log-level", "warn")
	cmd.Env = append(os.Environ(), "RAFTKMS_ENDPOINTS="+strings.Join(c.GRPCAddrs(), ",")) // endpoints from the environment
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	})

	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	api := kmsapi.NewKeyManagementServiceClient(cc)
	// Wait for the socket: Status with WaitForReady blocks until the
	// process listens (or the context ends).
	st, err := api.Status(ctx, &kmsapi.StatusRequest{}, grpc.WaitForReady(true))
	if err != nil || st.Healthz != "ok" || st.KeyId != key.KeyMetadata.Arn+"/1" {
		t.Fatalf("Status = %v, %v", st, err)
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v, %v; want mode 0600", fi, err)
	}
	dekSeed := []byte("0123456789abcdef0123456789abcdef")
	enc, err := api.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: dekSeed, Uid: "u1"})
	if err != nil || enc.KeyId != st.KeyId {
		t.Fatalf("Encrypt = %v, %v", enc, err)
	}
	dec, err := api.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: enc.KeyId, Annotations: enc.Annotations, Uid: "u2"})
	if err != nil || string(dec.Plaintext) != string(dekSeed) {
		t.Fatalf("Decrypt = %v, %v", dec, err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("kmsd k8s-plugin after SIGTERM: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("kmsd k8s-plugin did not stop on SIGTERM")
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}
}

func pkiFiles(ca, cert, key string) pki.Files { return pki.Files{CA: ca, Cert: cert, Key: key} }
