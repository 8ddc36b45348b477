package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/raftkms/raftkms/rpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// A node whose root key is not the cluster's must never serve: it would
// seal new key material under a key no other node holds, and it cannot
// open what the others sealed. Once it has caught up with the cluster it
// compares its root key with the one the replicated state records; on a
// mismatch (or when the leader refuses its Join for that reason) it logs
// why, stays NOT_SERVING, hands leadership over if it has it, and shuts its
// Raft node down so it can neither lead nor vote. Failed and Err tell kmsd,
// which exits non-zero with the message.

// rootKeyAttempt bounds one comparison (a read-index round and the wait
// until this node has applied that far).
const rootKeyAttempt = 5 * time.Second

// verifyRootKey waits until this node has caught up and compares root
// keys. It returns true when the node may serve.
func (s *Server) verifyRootKey() bool {
	for s.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(s.ctx, rootKeyAttempt)
		err := s.api.VerifyRootKey(ctx)
		cancel()
		var wrong *rpc.RootKeyError
		switch {
		case err == nil:
			return true
		case errors.As(err, &wrong):
			s.refuse(wrong)
			return false
		}
		s.log.Debug("comparing root keys with the cluster's; retrying", "error", err)
		s.sleep(100 * time.Millisecond)
	}
	return false
}

// refuseWrongRootKey refuses to serve when a failed registration shows that
// this node's root key is not the cluster's: the leader refused its Join for
// that reason, or its state already records another root key.
func (s *Server) refuseWrongRootKey(err error) bool {
	if rpc.IsRootKeyRefusal(err) {
		s.refuse(fmt.Errorf("the cluster refused this node: %s", status.Convert(err).Message()))
		return true
	}
	if m := s.api.RootKeyMismatch(); m != nil {
		s.refuse(m)
		return true
	}
	return false
}

// refuse takes the node out of service for good (until it is restarted).
func (s *Server) refuse(err error) {
	s.failOnce.Do(func() {
		s.failErr = err
		s.log.Error("refusing to serve: "+err.Error(), "root_key_id", s.cfg.RootKey.ID())
		s.serving.Store(false)
		s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
		if s.node.IsLeader() {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			if terr := s.node.TransferLeadership(ctx, ""); terr != nil {
				s.log.Warn("handing leadership over before shutting Raft down failed", "error", terr)
			}
			cancel()
		}
		if serr := s.node.Shutdown(); serr != nil {
			s.log.Warn("raft shutdown", "error", serr)
		}
		close(s.failed)
	})
}

// Failed is closed once the node has refused to serve (its root key is not
// the cluster's); Err then says why.
func (s *Server) Failed() <-chan struct{} { return s.failed }

// Err is why the node refused to serve, or nil.
func (s *Server) Err() error {
	select {
	case <-s.failed:
		return s.failErr
	default:
		return nil
	}
}

// newMaterial makes sealed material for the scheduler, unless this node's
// root key is not the cluster's.
func (s *Server) newMaterial(keyID string, version uint32) ([]byte, error) {
	if err := s.api.RootKeyErr(); err != nil {
		return nil, err
	}
	return s.api.NewSealedMaterial(keyID, version)
}
