package rpc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"

	"github.com/raftkms/raftkms/raftnode"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// gRPC metadata keys of the raftkms API.
const (
	// MDRequestID carries the idempotency token of a logical call; a client
	// sends the same one on every retry so a write applies once.
	MDRequestID = "x-raftkms-request-id"
	// MDStaleOK ("true") lets a read skip the read-index round.
	MDStaleOK = "x-raftkms-stale-ok"
	// MDLeader is set in the trailer of an Unavailable answer when the node
	// knows the leader's gRPC address, so clients can go there next.
	MDLeader = "x-raftkms-leader"
	// mdForwardedBy marks a call forwarded by a follower, so it is never
	// forwarded twice.
	mdForwardedBy = "x-raftkms-forwarded-by"
)

// writeMethods are the RPCs that become events and must run on the leader.
var writeMethods = map[string]bool{}

func init() {
	for _, m := range []string{"CreateKey", "EnableKey", "DisableKey", "ScheduleKeyDeletion", "CancelKeyDeletion",
		"EnableKeyRotation", "DisableKeyRotation", "RotateKeyOnDemand", "CreateAlias", "UpdateAlias", "DeleteAlias",
		"GetParametersForImport", "ImportKeyMaterial", "DeleteImportedKeyMaterial", "UpdateKeyDescription",
		"TagResource", "UntagResource", "PutKeyPolicy"} {
		writeMethods["/raftkms.kms.v1.KeyManagementService/"+m] = true
	}
	for _, m := range []string{"Join", "Remove", "TransferLeadership"} {
		writeMethods["/raftkms.cluster.v1.ClusterService/"+m] = true
	}
}

type ctxKey int

const requestIDKey ctxKey = 0

// requestID returns the call's idempotency token.
func withRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey, id)
}

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

func newRequestID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("rpc: no randomness for request IDs: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

func firstMD(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// UnaryInterceptor gives every call its request ID and caller identity,
// checks the calls that concern no single key, forwards writes to the leader
// when this node is a follower, writes the audit line, and turns errors into
// statuses.
func (s *Server) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		md, _ := metadata.FromIncomingContext(ctx)
		// Writes and the audit log need a request ID; a read without audit
		// skips making one (it costs randomness on the hot path).
		id := firstMD(md, MDRequestID)
		if (id == "" && (writeMethods[info.FullMethod] || s.audit != nil)) || len(id) > 128 {
			id = newRequestID()
		}
		ctx = context.WithValue(ctx, requestIDKey, id)
		forwarded := false
		c, err := s.identify(ctx, md)
		if s.audit != nil {
			defer func() { s.audit.record(c, info.FullMethod, id, req, err, forwarded) }()
		}
		if err == nil {
			err = s.authorizeMethod(c, info.FullMethod)
		}
		if err != nil {
			return nil, toStatus(err)
		}
		ctx = withCaller(ctx, c)
		isWrite := writeMethods[info.FullMethod] && c.via == "" && firstMD(md, mdForwardedBy) == ""

		if isWrite && !s.node.IsLeader() {
			forwarded = true
			resp, err = s.forward(ctx, info.FullMethod, req)
			return resp, toStatus(err)
		}
		resp, err = handler(ctx, req)
		if errors.Is(err, raftnode.ErrNotLeader) && isWrite {
			// Leadership moved while we handled the call; the proposal
			// surely did not apply, so forwarding it is safe.
			forwarded = true
			resp, err = s.forward(ctx, info.FullMethod, req)
		}
		if errors.Is(err, raftnode.ErrNotLeader) {
			if addr, aerr := s.leaderAddr(); aerr == nil {
				grpc.SetTrailer(ctx, metadata.Pairs(MDLeader, addr))
			}
			err = unavailableErr("this node is not the leader; retry")
		}
		err = toStatus(err)
		return resp, err
	}
}

// forward sends a write to the leader with the same request ID, and returns
// the leader's answer as it is.
func (s *Server) forward(ctx context.Context, method string, req any) (any, error) {
	addr, err := s.leaderAddr()
	if err != nil {
		return nil, err
	}
	if addr == s.cfg.GRPCAddr {
		return nil, unavailableErr("leadership is changing; retry")
	}
	resp, err := newResponse(method)
	if err != nil {
		return nil, err
	}
	conn, err := s.conn(addr)
	if err != nil {
		return nil, err
	}
	out := metadata.Pairs(MDRequestID, requestID(ctx), mdForwardedBy, s.cfg.NodeID,
		mdPrincipal, callerOf(ctx).identity)
	ctx = metadata.NewOutgoingContext(ctx, out)
	if err := conn.Invoke(ctx, method, req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// newResponse makes an empty response message of a method, found through
// the registered service descriptors.
func newResponse(method string) (proto.Message, error) {
	i := strings.LastIndex(method, "/")
	if i <= 1 {
		return nil, internalErr("bad method name %q", method)
	}
	svc := protoreflect.FullName(strings.TrimPrefix(method[:i], "/"))
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(svc)
	if err != nil {
		return nil, internalErr("unknown service %s", svc)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, internalErr("%s is not a service", svc)
	}
	md := sd.Methods().ByName(protoreflect.Name(method[i+1:]))
	if md == nil {
		return nil, internalErr("unknown method %s", method)
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return nil, internalErr("unknown response type of %s", method)
	}
	return mt.New().Interface(), nil
}
