package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	"google.golang.org/grpc/metadata"
)

// gRPC metadata keys of the raftkms API (the server's side is in rpc).
const (
	mdRequestID = "x-raftkms-request-id"
	mdStaleOK   = "x-raftkms-stale-ok"
	mdLeader    = "x-raftkms-leader"
)

// NewRequestID returns a random 128-bit idempotency token in hex.
func NewRequestID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("client: no randomness for request IDs: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

// WithRequestID makes calls with ctx use id as their idempotency token
// instead of a fresh one. Use it to retry a logical call yourself (after a
// crash, say) so that it still applies once; the ID replaces any set before.
// An ID is at most 128 characters of letters, digits and - _ . : / + =;
// the server refuses any other with a ValidationException. It is scoped to
// the caller's identity, and reusing it for a different request is an
// IdempotentParameterMismatchException.
func WithRequestID(ctx context.Context, id string) context.Context {
	return withOutgoing(ctx, mdRequestID, id)
}

// RequestID is the idempotency token set on ctx, or "".
func RequestID(ctx context.Context) string {
	md, _ := metadata.FromOutgoingContext(ctx)
	return firstValue(md, mdRequestID)
}

// WithStaleOK lets reads made with ctx skip the linearizable read-index
// round: the answering node serves from what it has applied, which may lag
// the leader a little (DESIGN §5).
func WithStaleOK(ctx context.Context) context.Context {
	return withOutgoing(ctx, mdStaleOK, "true")
}

func requestIDOrNew(ctx context.Context) string {
	if id := RequestID(ctx); id != "" {
		return id
	}
	return NewRequestID()
}

// withOutgoing sets one metadata key, replacing its values, and keeps the rest.
func withOutgoing(ctx context.Context, key, value string) context.Context {
	md, _ := metadata.FromOutgoingContext(ctx)
	if firstValue(md, key) == value && len(md.Get(key)) == 1 {
		return ctx
	}
	md = md.Copy()
	md.Set(key, value)
	return metadata.NewOutgoingContext(ctx, md)
}
