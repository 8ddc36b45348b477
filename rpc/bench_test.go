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
	"os"
	"sync/atomic"
	"syscall"
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
	"google.golang.org/protobuf/proto"
)

const benchPayload = 1024

// benchPrincipal makes the benchmarks' keys and calls them (with auth on,
// through the key's default policy).
const benchPrincipal = "app"

const (
	methodCreateKey = "/raftkms.kms.v1.KeyManagementService/CreateKey"
	methodEncrypt   = "/raftkms.kms.v1.KeyManagementService/Encrypt"
	methodDecrypt   = "/raftkms.kms.v1.KeyManagementService/Decrypt"
)

// benchNode is one node that leads a cluster of one.
type benchNode struct {
	api   *Server
	svc   kmsService
	keyID string
	blob  []byte // a ciphertext of the payload under keyID
}

func startBenchNode(b *testing.B, configure ...func(*Config)) *benchNode {
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
	cfg := Config{NodeID: "kms1", GRPCAddr: "bufconn", FSM: f, Node: node, Root: root}
	for _, c := range configure {
		c(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	api.Store(s)
	b.Cleanup(s.Close)

	n := &benchNode{api: s, svc: kmsService{Server: s}}
	ctx := context.Background()
	ck, err := s.Invoke(ctx, benchPrincipal, methodCreateKey, &kmsv1.CreateKeyRequest{Description: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	n.keyID = ck.(*kmsv1.CreateKeyResponse).KeyMetadata.KeyId
	enc, err := s.Invoke(ctx, benchPrincipal, methodEncrypt, &kmsv1.EncryptRequest{KeyId: n.keyID, Plaintext: make([]byte, benchPayload)})
	if err != nil {
		b.Fatal(err)
	}
	n.blob = enc.(*kmsv1.EncryptResponse).CiphertextBlob
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

// withAuthAudit turns on authorization (the key's default policy decides)
// and the audit log, written to a file as kmsd writes it, through the
// audit queue.
func withAuthAudit(b *testing.B) func(*Config) {
	return func(c *Config) {
		f, err := os.CreateTemp(b.TempDir(), "audit")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { f.Close() })
		c.Auth = Auth{Enabled: true, Admins: []string{"admin"}}
		c.Audit = f
		c.AuditQueue = DefaultAuditQueue
	}
}

// BenchmarkCryptoInvoke is Encrypt and Decrypt of 1 KiB through Invoke: the
// whole request path of a call (interceptor, identity, method table,
// authorization by the key policy, read barrier, crypto, audit line) without
// the transport, so what it measures is raftkms's own per-request work.
//
//	go test ./rpc -run '^$' -bench BenchmarkCryptoInvoke -benchmem -cpuprofile /tmp/cpu.out
func BenchmarkCryptoInvoke(b *testing.B) {
	n := startBenchNode(b, withAuthAudit(b))
	enc := &kmsv1.EncryptRequest{KeyId: n.keyID, Plaintext: make([]byte, benchPayload)}
	dec := &kmsv1.DecryptRequest{CiphertextBlob: n.blob}
	for _, c := range []struct {
		name   string
		ctx    context.Context
		method string
		req    proto.Message
	}{
		{"Encrypt/stale-ok", staleCtx(), methodEncrypt, enc},
		{"Encrypt/linearizable", context.Background(), methodEncrypt, enc},
		{"Decrypt/stale-ok", staleCtx(), methodDecrypt, dec},
		{"Decrypt/linearizable", context.Background(), methodDecrypt, dec},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(benchPayload)
			defer reportCPU(b)()
			for b.Loop() {
				if _, err := n.api.Invoke(c.ctx, benchPrincipal, c.method, c.req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("Encrypt/stale-ok/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(benchPayload)
		b.SetParallelism(16)
		defer reportCPU(b)()
		b.RunParallel(func(pb *testing.PB) {
			ctx := staleCtx()
			for pb.Next() {
				if _, err := n.api.Invoke(ctx, benchPrincipal, methodEncrypt, enc); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkCryptoInvokeSyncAudit is BenchmarkCryptoInvoke's stale Encrypt
// with every audit line written before its call returns (AuditQueue 0).
func BenchmarkCryptoInvokeSyncAudit(b *testing.B) {
	n := startBenchNode(b, withAuthAudit(b), func(c *Config) { c.AuditQueue = 0 })
	enc := &kmsv1.EncryptRequest{KeyId: n.keyID, Plaintext: make([]byte, benchPayload)}
	ctx := staleCtx()
	b.ReportAllocs()
	b.SetBytes(benchPayload)
	defer reportCPU(b)()
	for b.Loop() {
		if _, err := n.api.Invoke(ctx, benchPrincipal, methodEncrypt, enc); err != nil {
			b.Fatal(err)
		}
	}
}

// reportCPU reports the process's CPU time per operation (user and system,
// every goroutine: the audit writer, the garbage collector, Raft), as
// cpu-ns/op; ns/op is the caller's wait. Call as defer reportCPU(b)().
func reportCPU(b *testing.B) func() {
	start := processCPU()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
