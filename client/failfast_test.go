package client

import (
	"context"
	"crypto/tls"
	"sync/atomic"
	"testing"

	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// attemptCounter counts the attempts the client makes (the interceptor in
// DialOptions sees the logical call once and then every attempt).
func attemptCounter(n *atomic.Int32) grpc.DialOption {
	return grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		n.Add(1)
		return invoker(ctx, method, req, reply, cc, opts...)
	})
}

func TestFailFastStopsWhenNoEndpointConnects(t *testing.T) {
	for _, failFast := range []bool{true, false} {
		var n atomic.Int32
		c := newClient(t, Config{
			Endpoints:   []string{deadAddr(t), deadAddr(t)},
			MaxAttempts: 6,
			FailFast:    failFast,
			DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), attemptCounter(&n)},
		})
		_, err := c.KMS().DescribeKey(testCtx(t), &kmsv1.DescribeKeyRequest{KeyId: "k"})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("FailFast=%v: %v", failFast, err)
		}
		// One count for the logical call, then one per attempt.
		want := int32(1 + 2)
		if !failFast {
			want = 1 + 6
		}
		if got := n.Load(); got != want {
			t.Errorf("FailFast=%v: %d calls and attempts, want %d", failFast, got, want)
		}
	}
}

func TestFailFastKeepsRetryingNodesThatAnswer(t *testing.T) {
	rec := &recorder{}
	live := startFake(t, "n1", rec, func(_ context.Context, n int) (*kmsv1.DescribeKeyResponse, error) {
		if n < 3 {
			return nil, unavailable() // no leader yet: an answer, worth retrying
		}
		return ok("k")
	})
	c := newClient(t, Config{Endpoints: []string{deadAddr(t), live}, MaxAttempts: 10, FailFast: true})
	r, err := c.KMS().DescribeKey(testCtx(t), &kmsv1.DescribeKeyRequest{KeyId: "k"})
	if err != nil || r.GetKeyMetadata().GetKeyId() != "k" || len(rec.all()) != 3 {
		t.Fatalf("got %v, %v after %d calls", r, err, len(rec.all()))
	}
}

func TestFailFastDoesNotRetryTLSMismatch(t *testing.T) {
	rec := &recorder{}
	plain := startFake(t, "n1", rec, func(context.Context, int) (*kmsv1.DescribeKeyResponse, error) { return ok("k") })
	var n atomic.Int32
	c := newClient(t, Config{
		Endpoints:   []string{plain},
		MaxAttempts: 6,
		FailFast:    true,
		// A TLS client against a plaintext node: the handshake fails every time.
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13})), attemptCounter(&n)},
	})
	_, err := c.KMS().DescribeKey(testCtx(t), &kmsv1.DescribeKeyRequest{KeyId: "k"})
	if status.Code(err) != codes.Unavailable || n.Load() != 2 || len(rec.all()) != 0 {
		t.Fatalf("err %v after %d calls and attempts, %d reached the node", err, n.Load(), len(rec.all()))
	}
}
