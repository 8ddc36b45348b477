package k8splugin_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftkms/raftkms/client"
	"github.com/raftkms/raftkms/k8splugin"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/testcluster"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	kmsapi "k8s.io/kms/apis/v2"
)

func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func must[T any](t testing.TB, what string) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
}

// wantErr checks a call failed with the gRPC code and the AWS exception name
// at the start of the message.
func wantErr(t testing.TB, what string, err error, code codes.Code, exception string) {
	t.Helper()
	st, _ := status.FromError(err)
	if err == nil || st.Code() != code || !strings.HasPrefix(st.Message(), exception+":") {
		t.Fatalf("%s: got %v, want %v %s", what, err, code, exception)
	}
}

// plugin is a plugin serving on a unix socket and the KMS v2 client that
// kube-apiserver would use to reach it.
type plugin struct {
	api    kmsapi.KeyManagementServiceClient
	socket string
}

// startPlugin runs a plugin for keyID against the cluster's endpoints on a
// socket in a temporary directory, and connects to it with the generated
// KMS v2 client of k8s.io/kms. dial carries the plugin's TLS credentials.
func startPlugin(t testing.TB, c *testcluster.Cluster, keyID string, dial ...grpc.DialOption) *plugin {
	t.Helper()
	cl, err := client.New(client.Config{Endpoints: c.GRPCAddrs(), DialOptions: dial})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	p, err := k8splugin.New(k8splugin.Config{KMS: cl.KMS(), KeyID: keyID})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "kms.sock")
	srv, err := k8splugin.Listen("unix://"+sock, p)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return &plugin{api: kmsapi.NewKeyManagementServiceClient(cc), socket: sock}
}

// dek is a fresh 32-byte DEK seed, what the apiserver sends Encrypt.
func dek(t testing.TB) []byte {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// wrapped is a DEK as the apiserver stores it: ciphertext, key_id and
// annotations from Encrypt, and the plaintext to compare with.
type wrapped struct {
	plain []byte
	resp  *kmsapi.EncryptResponse
}

func (p *plugin) encrypt(t testing.TB, wantKeyID string) wrapped {
	t.Helper()
	plain := dek(t)
	resp := must[*kmsapi.EncryptResponse](t, "plugin Encrypt")(p.api.Encrypt(testCtx(t), &kmsapi.EncryptRequest{Plaintext: plain, Uid: "enc-" + newUID()}))
	if resp.KeyId != wantKeyID {
		t.Fatalf("Encrypt key_id = %q, want %q", resp.KeyId, wantKeyID)
	}
	if len(resp.Ciphertext) == 0 || len(resp.Ciphertext) >= 1024 {
		t.Fatalf("Encrypt ciphertext of %d bytes; KMS v2 wants 1..1023", len(resp.Ciphertext))
	}
	if string(resp.Annotations[k8splugin.AnnotationScheme]) != "1" {
		t.Fatalf("Encrypt annotations = %q", resp.Annotations)
	}
	return wrapped{plain: plain, resp: resp}
}

// decryptReq is the Decrypt request the apiserver makes for a stored DEK:
// a uid of its own, and what Encrypt returned.
func (w wrapped) decryptReq() *kmsapi.DecryptRequest {
	return &kmsapi.DecryptRequest{Ciphertext: w.resp.Ciphertext, KeyId: w.resp.KeyId, Annotations: w.resp.Annotations, Uid: "dec-" + newUID()}
}

func (p *plugin) mustDecrypt(t testing.TB, what string, w wrapped) {
	t.Helper()
	resp := must[*kmsapi.DecryptResponse](t, what)(p.api.Decrypt(testCtx(t), w.decryptReq()))
	if string(resp.Plaintext) != string(w.plain) {
		t.Fatalf("%s: the DEK unwrapped to other bytes", what)
	}
}

// status calls Status and checks its shape; it returns healthz and key_id.
func (p *plugin) status(t testing.TB) (healthz, keyID string) {
	t.Helper()
	resp := must[*kmsapi.StatusResponse](t, "plugin Status")(p.api.Status(testCtx(t), &kmsapi.StatusRequest{}))
	if resp.Version != "v2" || resp.KeyId == "" || len(resp.KeyId) >= 1024 {
		t.Fatalf("Status = %v", resp)
	}
	return resp.Healthz, resp.KeyId
}

// waitStatus polls Status until it is ok with the wanted key_id (after a
// leader change the cluster answers again once a new leader serves).
func (p *plugin) waitStatus(t testing.TB, wantKeyID string) {
	t.Helper()
	deadline := time.Now().Add(testcluster.WaitTimeout)
	var last string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second) // the apiserver's default timeout
		resp, err := p.api.Status(ctx, &kmsapi.StatusRequest{})
		cancel()
		if err == nil && resp.Healthz == "ok" && resp.KeyId == wantKeyID {
			return
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("healthz %q key_id %q", resp.Healthz, resp.KeyId)
		}
		if time.Now().After(deadline) {
			t.Fatalf("Status not ok with key_id %s after %v; last: %s", wantKeyID, testcluster.WaitTimeout, last)
		}
		time.Sleep(50 * time.Millisecond) // polling
	}
}

// describe is the key's metadata, read through the cluster.
func describe(t testing.TB, k kmsv1.KeyManagementServiceClient, key string) *kmsv1.KeyMetadata {
	t.Helper()
	return must[*kmsv1.DescribeKeyResponse](t, "DescribeKey")(k.DescribeKey(testCtx(t), &kmsv1.DescribeKeyRequest{KeyId: key})).KeyMetadata
}

func keyIDOf(t testing.TB, arn string, version uint32) string {
	t.Helper()
	id, err := k8splugin.KeyID(arn, version)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func newUID() string { return client.NewRequestID()[:16] }
