package rpc

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

// arnPrefix is the ARN form raftkms prints for keys; any ARN whose last
// part is key/ID or alias/NAME is accepted as a key reference.
const (
	accountID      = "000000000000"
	arnPrefix      = "arn:raftkms:kms:local:" + accountID + ":"
	principalAnon  = "anonymous"
	maxDescription = 8192
)

func keyARN(id string) string     { return arnPrefix + "key/" + id }
func aliasARN(name string) string { return arnPrefix + name }

// principal is the identity of the caller (from its client certificate
// with mutual TLS; "anonymous" without).
func (s *Server) principal(ctx context.Context) string {
	if id := callerOf(ctx).identity; id != "" {
		return id
	}
	return principalAnon
}

// propose turns one event into a log entry on the leader and returns the
// state machine's result; a deterministic rejection comes back as the error.
func (s *Server) propose(ctx context.Context, env *eventsv1.Envelope) (*fsm.Result, error) {
	if err := s.stamp(ctx, env); err != nil { // clock.go
		return nil, err
	}
	env.RequestId = requestID(ctx)
	env.Principal = s.principal(ctx)
	env.RequestFingerprint = fingerprintOf(ctx)
	res, err := s.node.Propose(ctx, env)
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		return res, res.Err
	}
	return res, nil
}

// newKeyID makes a random (version 4) UUID.
func (s *Server) newKeyID() (string, error) {
	var b [16]byte
	if _, err := s.rand.Read(b[:]); err != nil {
		return "", internalErr("no randomness: %v", err)
	}
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b[:])
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[0:8], h[8:12], h[12:16], h[16:20], h[20:32]), nil
}

// NewSealedMaterial is newSealedMaterial for the rotation scheduler.
func (s *Server) NewSealedMaterial(keyID string, version uint32) ([]byte, error) {
	return s.newSealedMaterial(keyID, version)
}

// newSealedMaterial makes 32 random bytes of key material and seals them for
// (keyID, version). The plaintext never leaves this function.
func (s *Server) newSealedMaterial(keyID string, version uint32) ([]byte, error) {
	var m [32]byte
	if _, err := s.rand.Read(m[:]); err != nil {
		return nil, internalErr("no randomness: %v", err)
	}
	sealed, err := s.root.Seal(keyID, version, m[:])
	clear(m[:])
	return sealed, err
}

// readKey resolves a key reference for a read after the read barrier, and
// checks that the caller may perform action on it.
func (s *Server) readKey(ctx context.Context, ref, action string) (*fsm.Key, error) {
	if ref == "" {
		return nil, validationErr("KeyId is required")
	}
	if err := s.readBarrier(ctx); err != nil {
		return nil, err
	}
	return s.writeKey(ctx, ref, action)
}

// resolve finds a key by reference. A deleted key keeps its record and
// history (ListKeyEvents still shows them), but to every other call it is
// gone, as in AWS KMS: NotFoundException.
func (s *Server) resolve(ref, action string) (*fsm.Key, error) {
	k, err := s.fsm.ResolveKey(ref)
	if err != nil {
		return nil, err
	}
	if k.State == fsm.KeyStateDeleted && action != "kms:ListKeyEvents" {
		return nil, notFoundErr("key %s is deleted", k.ID)
	}
	return k, nil
}

// writeKey resolves a key reference for a write on the leader (reads call it
// after their read barrier). Apply checks the key again, so a stale read
// here only costs a clear rejection.
func (s *Server) writeKey(ctx context.Context, ref, action string) (*fsm.Key, error) {
	if ref == "" {
		return nil, validationErr("KeyId is required")
	}
	// A new leader must not judge a write by state older than what earlier
	// leaders acknowledged (on a follower this is ErrNotLeader, and the
	// call is forwarded).
	if s.node.IsLeader() {
		if err := s.node.CatchUp(ctx); err != nil {
			return nil, err
		}
	}
	k, err := s.resolve(ref, action)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, k, action); err != nil {
		return nil, err
	}
	return k, nil
}

// periodSeconds picks a period from days or the seconds extension, and
// checks it against the bounds.
func periodSeconds(days int32, seconds int64, def, lo, hi time.Duration, what string) (int64, error) {
	if days != 0 && seconds != 0 {
		return 0, validationErr("give %s or its seconds form, not both", what)
	}
	d := def
	switch {
	case seconds != 0:
		d = time.Duration(seconds) * time.Second
	case days != 0:
		d = time.Duration(days) * 24 * time.Hour
	}
	if d < lo || d > hi {
		return 0, validationErr("%s must be between %s and %s", what, fmtDays(lo), fmtDays(hi))
	}
	return int64(d / time.Second), nil
}

func fmtDays(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.String()
}
