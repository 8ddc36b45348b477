package rpc

// Benchmarks of the crypto calls on a one-node cluster (real Raft, BoltDB and
// read-index rounds; no network between nodes): straight through the
// service's handler, and through gRPC over an in-memory connection
// (bufconn) with the server's interceptor, as clients reach it.
//
//	go test ./rpc -run '^$' -bench . -benchmem

import (
	"context"
	"crypto/rand"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/keycrypto"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/raftnode"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"
)

const benchPayload = 1024

// benchNode is one node that leads a cluster of one.
type benchNode struct {
	api   *Server
	svc   kmsService
	keyID string
	blob  []byte // a ciphertext of the payload under keyID
}

func startBenchNode(b *testing.B) *benchNode {
	b.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()

	var api atomic.Pointer[Server]
	f, err := fsm.New(fsm.Config{OnChange: func(id string) {
		if s := api.Load(); s != nil {
			s.KeyChanged(id)
		}
	}})
	if err != nil {
		b.Fatal(err)
	}
	node, err := raftnode.New(raftnode.Config{NodeID: "kms1", RaftBindAddr: addr, DataDir: b.TempDir(), FSM: f,
		Peers: []raftnode.Peer{{ID: "kms1", Addr: addr}}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { node.Shutdown() })
	deadline := time.Now().Add(10 * time.Second)
	for !node.IsLeader() {
		if time.Now().After(deadline) {
			b.Fatal("no leader")
		}
		time.Sleep(5 * time.Millisecond)
	}
	root, err := keycrypto.GenerateRootKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{NodeID: "kms1", GRPCAddr: "bufconn", FSM: f, Node: node, Root: root})
	if err != nil {
		b.Fatal(err)
	}
	api.Store(s)
	b.Cleanup(s.Close)

	n := &benchNode{api: s, svc: kmsService{Server: s}}
	ctx := context.Background()
	ck, err := n.svc.CreateKey(withRequestID(ctx, newRequestID()), &kmsv1.CreateKeyRequest{Description: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	n.keyID = ck.KeyMetadata.KeyId
	enc, err := n.svc.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: n.keyID, Plaintext: make([]byte, benchPayload)})
	if err != nil {
		b.Fatal(err)
	}
	n.blob = enc.CiphertextBlob
	return n
}

// staleCtx asks for a read without the read-index round, as the
// x-raftkms-stale-ok header does.
func staleCtx() context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs(MDStaleOK, "true"))
}

// BenchmarkEncryptHandler is Encrypt of 1 KiB through the handler: read
// barrier (a read-index round: on a one-node cluster, VerifyLeader answers
// at once), key lookup, cached AEAD, ciphertext format.
func BenchmarkEncryptHandler(b *testing.B) {
	n := startBenchNode(b)
	req := &kmsv1.EncryptRequest{KeyId: n.keyID, Plaintext: make([]byte, benchPayload)}
	for _, c := range []struct {
		name string
		ctx  context.Context
	}{
		{"linearizable", context.Background()},
		{"stale-ok", staleCtx()},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(benchPayload)
			for b.Loop() {
				if _, err := n.svc.Encrypt(c.ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecryptHandler is Decrypt of 1 KiB through the handler.
func BenchmarkDecryptHandler(b *testing.B) {
	n := startBenchNode(b)
	req := &kmsv1.DecryptRequest{CiphertextBlob: n.blob}
	b.ReportAllocs()
	b.SetBytes(benchPayload)
	for b.Loop() {
		if _, err := n.svc.Decrypt(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}

// grpcClient serves the node over an in-memory connection, with the
// interceptor the real server uses, and returns a client.
func (n *benchNode) grpcClient(b *testing.B) kmsv1.KeyManagementServiceClient {
	b.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(grpc.ChainUnaryInterceptor(n.api.UnaryInterceptor()))
	n.api.Register(gs)
	go gs.Serve(lis)
	b.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return kmsv1.NewKeyManagementServiceClient(conn)
}

// BenchmarkEncryptGRPC is Encrypt of 1 KiB through gRPC (bufconn): one
// caller at a time (latency), and many in parallel (throughput).
func BenchmarkEncryptGRPC(b *testing.B) {
	n := startBenchNode(b)
	client := n.grpcClient(b)
	req := &kmsv1.EncryptRequest{KeyId: n.keyID, Plaintext: make([]byte, benchPayload)}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(benchPayload)
		for b.Loop() {
			if _, err := client.Encrypt(context.Background(), req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(benchPayload)
		b.SetParallelism(32) // 32 × GOMAXPROCS callers
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := client.Encrypt(context.Background(), req); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
