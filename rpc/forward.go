package rpc

import (
	"context"
	"errors"
	"strings"

	"github.com/raftkms/raftkms/raftnode"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
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

// UnaryInterceptor gives every call its request ID and caller identity,
// refuses what the method table does not allow (and any method missing from
// it), rejects undecodable requests, forwards writes to the leader when this
// node is a follower, writes the audit line, and turns errors into statuses.
func (s *Server) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		m, err := lookupMethod(info.FullMethod)
		if err != nil {
			s.log.Error("refusing a call to a method missing from the method table", "method", info.FullMethod)
			return nil, toStatus(err)
		}
		in := incomingOf(ctx)
		// Writes and the audit log need a request ID; a read without audit
		// skips making one (it costs randomness on the hot path). A client's
		// ID that is not valid is refused, never replaced: replacing it
		// would apply a retried write twice.
		id := first(in.requestID)
		idErr := checkRequestID(id)
		if idErr != nil {
			id = "" // not echoed into the audit log
		} else if id == "" && (m.write() || s.audit != nil) {
			id = newRequestID()
		}
		forwarded := false
		c, err := s.identify(ctx, in)
		if s.audit != nil {
			defer func() { s.audit.record(c, m, id, req, err, forwarded) }()
		}
		if err == nil {
			err = idErr
		}
		if err == nil {
			err = badInput(req)
		}
		if err == nil {
			err = s.authorizeMethod(c, m, req)
		}
		if err == nil && m.write() {
			ctx, err = withFingerprint(ctx, m, req)
		}
		if err != nil {
			return nil, toStatus(err)
		}
		// One context value for the call (requests.go); the request is
		// there for conditions and grant constraints (grants.go).
		ci := &callInfo{requestID: id, caller: c, req: req}
		ctx = context.WithValue(ctx, callInfoKey{}, ci)
		isWrite := m.write() && c.via == "" && first(in.forwardedBy) == ""

		if isWrite && !s.node.IsLeader() {
			forwarded = true
			resp, err = s.forward(ctx, m, req)
			return resp, toStatus(err)
		}
		// Reads, and writes answered here (a write may be refused from the
		// leader's state before anything is proposed), are held until what
		// they saw is visible on every node (lease.go).
		rs := newReadState(req)
		rs.checked = m.write()
		ci.read = rs
		resp, err = handler(ctx, req)
		if !errors.Is(err, raftnode.ErrNotLeader) && !errors.Is(err, raftnode.ErrAmbiguous) {
			if herr := s.holdRead(ctx, rs); herr != nil {
				resp, err = nil, herr
			}
		}
		if err == nil && !m.write() && dryRun(req) {
			// A read (a cryptographic call) ran in full and would have
			// succeeded; its answer is dropped (grants.go).
			resp, err = nil, dryRunErr(m.name[strings.LastIndex(m.name, "/")+1:])
		}
		if errors.Is(err, raftnode.ErrNotLeader) && isWrite {
			// Leadership moved while we handled the call; the proposal
			// surely did not apply, so forwarding it is safe.
			forwarded = true
			resp, err = s.forward(ctx, m, req)
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
// the leader's answer as it is. The leader believes the principal named here
// because this node's certificate is a node's.
func (s *Server) forward(ctx context.Context, m *method, req any) (any, error) {
	addr, err := s.leaderAddr()
	if err != nil {
		return nil, err
	}
	if addr == s.cfg.GRPCAddr {
		return nil, unavailableErr("leadership is changing; retry")
	}
	conn, err := s.conn(addr)
	if err != nil {
		return nil, err
	}
	resp := m.output.New().Interface()
	out := metadata.Pairs(MDRequestID, requestID(ctx), mdForwardedBy, s.cfg.NodeID,
		mdPrincipal, callerOf(ctx).identity)
	ctx = metadata.NewOutgoingContext(ctx, out)
	if err := conn.Invoke(ctx, m.name, req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}
