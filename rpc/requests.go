package rpc

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// maxRequestID bounds a client's request ID. 128 characters hold any UUID,
// a 256-bit token in hex or base64, or a short prefix and a token, and the
// fsm keeps the ID of every recent write in memory.
const maxRequestID = 128

// requestIDChars is what a request ID may be made of: letters, digits and
// - _ . : / + = (UUIDs, hex, base64 and path-like prefixes). Nothing that
// would need escaping in a log line or a JSON audit record.
func requestIDChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '-', '_', '.', ':', '/', '+', '=':
		return true
	}
	return false
}

// checkRequestID refuses a client's request ID that is too long or has
// characters outside the safe set ("" is no ID: the server makes one).
func checkRequestID(id string) error {
	if len(id) > maxRequestID {
		return validationErr("the request ID (%s) is %d characters long; at most %d are allowed", MDRequestID, len(id), maxRequestID)
	}
	for i := 0; i < len(id); i++ {
		if !requestIDChar(id[i]) {
			return validationErr("the request ID (%s) may contain only letters, digits and - _ . : / + =", MDRequestID)
		}
	}
	return nil
}

type fingerprintKey struct{}

// withFingerprint binds a write's request ID to what was asked: SHA-256 of
// the full method name and the deterministic encoding of the request. A
// follower forwards the request unchanged, so the leader computes the same
// fingerprint; the state machine refuses the same principal's request ID
// reused with a different fingerprint (IdempotentParameterMismatchException)
// instead of answering with the first request's result.
func withFingerprint(ctx context.Context, m *method, req any) (context.Context, error) {
	fp, err := requestFingerprint(m.name, req)
	if err != nil {
		return ctx, err
	}
	return context.WithValue(ctx, fingerprintKey{}, fp), nil
}

func requestFingerprint(fullMethod string, req any) ([]byte, error) {
	msg, ok := req.(proto.Message)
	if !ok {
		return nil, internalErr("request of %s is not a protobuf message", fullMethod)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return nil, internalErr("cannot encode the request of %s: %v", fullMethod, err)
	}
	h := sha256.New()
	h.Write([]byte(fullMethod))
	h.Write([]byte{0})
	h.Write(b)
	return h.Sum(nil), nil
}

// fingerprintOf is the fingerprint of the call a proposal is made for (nil
// for events no client request caused).
func fingerprintOf(ctx context.Context) []byte {
	fp, _ := ctx.Value(fingerprintKey{}).([]byte)
	return fp
}

// callInfo is what the interceptor learns of a call and the handlers read:
// one context value per call rather than one per item, so the request path
// allocates one context, not three. It is never changed once in a context;
// the with* functions derive a new one.
type callInfo struct {
	requestID string     // the call's idempotency token
	caller    caller     // who made the call
	req       any        // the request, for conditions and grant constraints
	read      *readState // what the call reads, for leases (lease.go)
}

type callInfoKey struct{}

func callOf(ctx context.Context) *callInfo {
	ci, _ := ctx.Value(callInfoKey{}).(*callInfo)
	return ci
}

// withCall derives ctx with a copy of its call info changed by edit.
func withCall(ctx context.Context, edit func(*callInfo)) context.Context {
	var ci callInfo
	if old := callOf(ctx); old != nil {
		ci = *old
	}
	edit(&ci)
	return context.WithValue(ctx, callInfoKey{}, &ci)
}

// withRequestID sets the call's idempotency token.
func withRequestID(ctx context.Context, id string) context.Context {
	return withCall(ctx, func(ci *callInfo) { ci.requestID = id })
}

// requestID returns the call's idempotency token.
func requestID(ctx context.Context) string {
	if ci := callOf(ctx); ci != nil {
		return ci.requestID
	}
	return ""
}

// newRequestID makes a server-side request ID: 128 random bits in hex.
func newRequestID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("rpc: no randomness for request IDs: " + err.Error())
	}
	var out [32]byte
	hex.Encode(out[:], b[:])
	return string(out[:])
}

func firstMD(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// incoming are the raftkms headers of a call, read one by one from the
// incoming metadata (metadata.FromIncomingContext copies all of it).
type incoming struct {
	requestID   []string
	principal   []string // mdPrincipal
	forwardedBy []string // mdForwardedBy
}

func incomingOf(ctx context.Context) incoming {
	return incoming{
		requestID:   metadata.ValueFromIncomingContext(ctx, MDRequestID),
		principal:   metadata.ValueFromIncomingContext(ctx, mdPrincipal),
		forwardedBy: metadata.ValueFromIncomingContext(ctx, mdForwardedBy),
	}
}

func first(v []string) string {
	if len(v) > 0 {
		return v[0]
	}
	return ""
}
