package k8splugin

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	kmsapi "k8s.io/kms/apis/v2"
)

// unreachable is a cluster client whose every call fails as a cluster with
// no node up does.
type unreachable struct {
	kmsv1.KeyManagementServiceClient
}

func (unreachable) DescribeKey(context.Context, *kmsv1.DescribeKeyRequest, ...grpc.CallOption) (*kmsv1.DescribeKeyResponse, error) {
	return nil, status.Error(codes.Unavailable, "connection refused")
}

func testPlugin(t *testing.T) *Plugin {
	t.Helper()
	p, err := New(Config{KMS: unreachable{}, KeyID: "alias/k8s"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNewRefusesIncompleteConfig(t *testing.T) {
	if _, err := New(Config{KeyID: "alias/k8s"}); err == nil {
		t.Error("no client accepted")
	}
	if _, err := New(Config{KMS: unreachable{}, KeyID: "  "}); err == nil {
		t.Error("no key accepted")
	}
}

// TestListenSocket: the socket is made with mode 0600, a stale one is
// replaced, a live one or a file that is not a socket is refused, endpoints
// that are not unix:// are refused, and Stop removes the socket.
func TestListenSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "kms.sock")
	p := testPlugin(t)

	for _, bad := range []string{"", "tcp://127.0.0.1:9000", "/var/run/kms.sock", "unix://"} {
		if _, err := Listen(bad, p); err == nil {
			t.Errorf("Listen(%q) accepted", bad)
		}
	}

	// A stale socket (its process gone) is replaced.
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	s, err := Listen("unix://"+sock, p)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != SocketMode {
		t.Fatalf("socket mode %v, want socket %v", fi.Mode(), SocketMode)
	}

	// A second plugin on the same socket is refused while the first serves.
	if _, err := Listen("unix://"+sock, p); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Listen on a live socket: %v", err)
	}

	// The generated client reaches the plugin; an unreachable cluster is
	// a failed Status with the cluster's code.
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	_, err = kmsapi.NewKeyManagementServiceClient(cc).Status(context.Background(), &kmsapi.StatusRequest{})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "alias/k8s") {
		t.Fatalf("Status with the cluster down: %v", err)
	}

	s.Stop()
	if err := <-served; err != nil {
		t.Fatalf("Serve after Stop: %v", err)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket left after Stop: %v", err)
	}

	// A regular file where the socket should be is never deleted.
	plain := filepath.Join(dir, "not-a-socket")
	if err := os.WriteFile(plain, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen("unix://"+plain, p); err == nil {
		t.Fatal("Listen replaced a regular file")
	}
	if b, err := os.ReadFile(plain); err != nil || string(b) != "keep me" {
		t.Fatalf("the regular file was touched: %q, %v", b, err)
	}
}
