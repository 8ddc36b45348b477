package rpc

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

const (
	principalAnon  = "anonymous"
	maxDescription = 8192
)

// ARN is the partition, region and account a cluster names its keys with:
// arn:PARTITION:kms:REGION:ACCOUNT:key/ID, the form AWS SDKs and tools
// parse. Every node of a cluster should use the same values. Any ARN whose
// last part is key/ID or alias/NAME is accepted as a key reference.
type ARN struct {
	Partition string // default DefaultPartition
	Region    string // default DefaultRegion
	Account   string // default DefaultAccount
}

// Defaults for ARN: the AWS partition (tools such as sops accept only its
// ARNs), the AWS SDKs' and CLI's usual region, and an all-zero account.
const (
	DefaultPartition = "aws"
	DefaultRegion    = "us-east-1"
	DefaultAccount   = "000000000000"
)

func (a ARN) withDefaults() ARN {
	if a.Partition == "" {
		a.Partition = DefaultPartition
	}
	if a.Region == "" {
		a.Region = DefaultRegion
	}
	if a.Account == "" {
		a.Account = DefaultAccount
	}
	return a
}

// check refuses values that would not make an ARN AWS tools parse.
func (a ARN) check() error {
	for _, v := range []struct{ name, val string }{{"partition", a.Partition}, {"region", a.Region}, {"account", a.Account}} {
		if strings.ContainsAny(v.val, ":/ ") {
			return fmt.Errorf("rpc: ARN %s %q must not contain ':', '/' or spaces", v.name, v.val)
		}
	}
	for _, c := range a.Account {
		if c < '0' || c > '9' {
			return fmt.Errorf("rpc: ARN account %q must be digits (AWS accounts are 12 digits)", a.Account)
		}
	}
	return nil
}

// prefix is "arn:PARTITION:kms:REGION:ACCOUNT:".
func (a ARN) prefix() string {
	return "arn:" + a.Partition + ":kms:" + a.Region + ":" + a.Account + ":"
}

func (s *Server) keyARN(id string) string     { return s.arnPrefix + "key/" + id }
func (s *Server) aliasARN(name string) string { return s.arnPrefix + name }

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
