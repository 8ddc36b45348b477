package rpc

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"

	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	"github.com/raftkms/raftkms/raftnode"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Root-key checks (DESIGN §6). Every node must hold the cluster's root key:
// a node with another one would seal new material that no other node can
// open. The replicated state records the root key's check value (the first
// RegisterNode that carries one sets it; the state machine rejects a
// different one), every RegisterNode and Join carries the proposer's, a
// leader refuses to add a node whose check differs, and a node whose root key
// is not the state's refuses to serve and to propose anything. A node with
// a root keyring passes when its ring holds the key the state records.

// rootKeyMismatch names the exception of a refused Join (and of the state
// machine's rejection of a RegisterNode with another root key), so the
// joining node can tell it from a passing failure (IsRootKeyRefusal).
const rootKeyMismatch = "RootKeyMismatchException"

// RootKeyError says that this node's root key is not the cluster's.
type RootKeyError struct {
	Node    string // this node's root-key ID
	Cluster string // the root-key ID the replicated state records
}

func (e *RootKeyError) Error() string {
	return fmt.Sprintf("this node's root key %s is not the cluster's %s: start it with the cluster's root key file", e.Node, e.Cluster)
}

// rootKeyFields are this node's root-key check value and ID, for
// RegisterNode events and Join requests. Neither reveals the key. A node
// whose root keyring holds the key the state records sends that key's;
// otherwise it sends its ring's first key's (keycrypto NewRootKeyRing).
func (s *Server) rootKeyFields() ([]byte, string) {
	if check, id := s.fsm.RootKeyCheck(); len(check) > 0 && s.root.MatchesCheckValue(check) {
		return check, id
	}
	return s.root.CheckValue(), s.root.ID()
}

// rootKeyRecorded reports whether the replicated state records a root key.
func (s *Server) rootKeyRecorded() bool {
	check, _ := s.fsm.RootKeyCheck()
	return len(check) > 0
}

// mismatch is the error for a state that records a root key other than
// this node's, or nil.
func (s *Server) mismatch() *RootKeyError {
	check, id := s.fsm.RootKeyCheck()
	if len(check) == 0 || s.root.MatchesCheckValue(check) {
		return nil
	}
	return &RootKeyError{Node: strings.Join(s.root.KeyIDs(), ", "), Cluster: id}
}

// rootKeyErr refuses every proposal of a node whose root key is not the
// cluster's (the propose path and the scheduler ask it): Unavailable, so a
// client retries on another node.
func (s *Server) rootKeyErr() error {
	if m := s.mismatch(); m != nil {
		return unavailableErr("%v; this node refuses to serve, retry on another node", m)
	}
	return nil
}

// RootKeyErr is rootKeyErr for the rotation scheduler's wiring.
func (s *Server) RootKeyErr() error { return s.rootKeyErr() }

// VerifyRootKey returns once this node has caught up with the cluster (a
// read-index round, even on a node that serves stale reads) and compares its
// root key with the one the state records: a *RootKeyError when they differ,
// nil when they match or the state records none yet.
func (s *Server) VerifyRootKey(ctx context.Context) error {
	var idx uint64
	var err error
	if s.node.IsLeader() {
		idx, err = s.node.ReadIndex(ctx)
	}
	if !s.node.IsLeader() || errors.Is(err, raftnode.ErrNotLeader) {
		idx, err = s.readIdx.Get(ctx)
	}
	if err == nil {
		err = s.node.WaitApplied(ctx, idx)
	}
	if err != nil {
		return err
	}
	return s.RootKeyMismatch()
}

// RootKeyMismatch compares this node's root key with the one its state
// records so far: a *RootKeyError when they differ. The state never changes
// the root key it records, so a mismatch is final even before the node has
// caught up; nil is not (see VerifyRootKey).
func (s *Server) RootKeyMismatch() error {
	if m := s.mismatch(); m != nil {
		return m
	}
	return nil
}

// checkJoinRootKey refuses a Join from a node whose root key is not the
// cluster's (the state's, or this leader's while the state records none),
// before the node becomes a voter.
func (s *Server) checkJoinRootKey(req *clusterv1.JoinRequest) error {
	want, wantID := s.fsm.RootKeyCheck()
	if len(want) == 0 {
		want, wantID = s.rootKeyFields()
	}
	if len(req.RootKeyCheck) == 0 {
		return &apiError{codes.FailedPrecondition, rootKeyMismatch, fmt.Sprintf(
			"node %s sent no root-key check; the cluster's root key is %s", req.NodeId, wantID)}
	}
	if subtle.ConstantTimeCompare(req.RootKeyCheck, want) != 1 {
		return &apiError{codes.FailedPrecondition, rootKeyMismatch, fmt.Sprintf(
			"node %s holds root key %s, not the cluster's %s: start it with the cluster's root key file",
			req.NodeId, req.RootKeyId, wantID)}
	}
	return nil
}

// IsRootKeyRefusal reports whether err is a Join refused because the
// joining node's root key is not the cluster's: retrying cannot help.
func IsRootKeyRefusal(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.FailedPrecondition && strings.HasPrefix(st.Message(), rootKeyMismatch)
}
