package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"sync"

	"github.com/raftkms/raftkms/keycrypto"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// bareKMS is the gRPC baseline: the crypto calls of KeyManagementService
// served by a bare gRPC server from a map of cached version keys, with
// the same ciphertext format as raftkms. No Raft, no read-index round, no
// interceptor, no key states: what is left is the cost of gRPC on loopback
// and of the AEAD itself, the limit a node can reach for crypto RPCs.
type bareKMS struct {
	kmsv1.UnimplementedKeyManagementServiceServer
	keys sync.Map // key ID → *keycrypto.VersionKey; written in setup only
}

// CreateKey makes a key in memory; kmsbench calls it only in setup, so
// the baseline and raftkms share their setup code.
func (b *bareKMS) CreateKey(ctx context.Context, req *kmsv1.CreateKeyRequest) (*kmsv1.CreateKeyResponse, error) {
	var raw [32]byte
	var id [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	rand.Read(id[:])
	h := hex.EncodeToString(id[:])
	// UUID-shaped, so ciphertexts are as long as raftkms's.
	keyID := h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
	vk, err := keycrypto.NewVersionKey(keyID, 1, raw[:])
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	b.keys.Store(keyID, vk)
	return &kmsv1.CreateKeyResponse{KeyMetadata: &kmsv1.KeyMetadata{KeyId: keyID}}, nil
}

func (b *bareKMS) versionKey(id string) (*keycrypto.VersionKey, error) {
	a, ok := b.keys.Load(id)
	if !ok {
		return nil, status.Error(codes.NotFound, "no such key")
	}
	return a.(*keycrypto.VersionKey), nil
}

func (b *bareKMS) Encrypt(ctx context.Context, req *kmsv1.EncryptRequest) (*kmsv1.EncryptResponse, error) {
	vk, err := b.versionKey(req.KeyId)
	if err != nil {
		return nil, err
	}
	blob, err := vk.Encrypt(rand.Reader, req.Plaintext, keycrypto.CanonicalContext(req.EncryptionContext))
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &kmsv1.EncryptResponse{CiphertextBlob: blob, KeyId: req.KeyId, EncryptionAlgorithm: "SYMMETRIC_DEFAULT"}, nil
}

func (b *bareKMS) Decrypt(ctx context.Context, req *kmsv1.DecryptRequest) (*kmsv1.DecryptResponse, error) {
	h, body, err := keycrypto.ParseCiphertext(req.CiphertextBlob)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	vk, err := b.versionKey(h.KeyID)
	if err != nil {
		return nil, err
	}
	pt, err := vk.Decrypt(h, body, keycrypto.CanonicalContext(req.EncryptionContext))
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &kmsv1.DecryptResponse{KeyId: h.KeyID, Plaintext: pt, EncryptionAlgorithm: "SYMMETRIC_DEFAULT"}, nil
}

func (b *bareKMS) GenerateDataKey(ctx context.Context, req *kmsv1.GenerateDataKeyRequest) (*kmsv1.GenerateDataKeyResponse, error) {
	vk, err := b.versionKey(req.KeyId)
	if err != nil {
		return nil, err
	}
	n, err := keycrypto.DataKeyLength(req.KeySpec, int(req.NumberOfBytes))
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	pt, err := keycrypto.RandomBytes(rand.Reader, n)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	blob, err := vk.Encrypt(rand.Reader, pt, keycrypto.CanonicalContext(req.EncryptionContext))
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &kmsv1.GenerateDataKeyResponse{CiphertextBlob: blob, Plaintext: pt, KeyId: req.KeyId}, nil
}

// grpcBaseline is n bare gRPC servers on loopback sharing one key map, one
// per node of the cluster it stands in for.
type grpcBaseline struct {
	servers   []*grpc.Server
	endpoints []string
}

func startGRPCBaseline(n int) (*grpcBaseline, error) {
	impl := &bareKMS{}
	b := &grpcBaseline{}
	for i := 0; i < n; i++ {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.stop()
			return nil, err
		}
		s := grpc.NewServer()
		kmsv1.RegisterKeyManagementServiceServer(s, impl)
		go s.Serve(lis)
		b.servers = append(b.servers, s)
		b.endpoints = append(b.endpoints, lis.Addr().String())
	}
	return b, nil
}

func (b *grpcBaseline) stop() {
	for _, s := range b.servers {
		s.Stop()
	}
}
