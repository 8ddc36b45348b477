package rpc

import (
	"context"
	"crypto/sha256"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/keycrypto"
	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

// Root-key rotation (docs/operations.md "Root key rotation"). RotateRootKey
// records in the state that everything is to be re-sealed under the newest
// key of the leader's root keyring; the leader's re-seal loop (RunReseal)
// then opens each blob sealed under another key and proposes it re-sealed,
// a few at a time, and once none is left proposes CompleteRootKeyRotation,
// which makes the new key the cluster's recorded root key. The request
// lives in the state, so a new leader picks the work up where the old one
// left it. Plaintext material exists only inside resealOne.

const (
	// resealInFlight bounds the re-seal proposals in flight at once.
	resealInFlight = 4
	// resealBatch is how many blobs one round of the loop collects.
	resealBatch = 256
	// resealInterval is how often the loop looks for work while a
	// rotation is requested (and its retry delay after a failure).
	resealInterval = time.Second
	// principalRootKeyRotation is the principal of the loop's events.
	principalRootKeyRotation = "raftkms:root-key-rotation"
)

// RotateRootKey records a rotation to the newest key of this leader's root
// keyring and wakes the re-seal loop.
func (s clusterService) RotateRootKey(ctx context.Context, _ *clusterv1.RotateRootKeyRequest) (*clusterv1.RotateRootKeyResponse, error) {
	keys := s.root.Keys()
	target := keys[len(keys)-1]
	if err := s.rootKeyErr(); err != nil {
		return nil, err
	}
	if _, id := s.fsm.RootKeyCheck(); id == target.ID() && s.countNotUnder(target.ID()) == 0 {
		return &clusterv1.RotateRootKeyResponse{TargetRootKeyId: target.ID()}, nil
	}
	if id, _ := s.fsm.RootKeyRotation(); id != target.ID() {
		if _, err := s.propose(ctx, &eventsv1.Envelope{Event: &eventsv1.Envelope_RequestRootKeyRotation{
			RequestRootKeyRotation: &eventsv1.RequestRootKeyRotation{
				TargetRootKeyId: target.ID(), TargetRootKeyCheck: target.CheckValue()}}}); err != nil {
			return nil, err
		}
	}
	select {
	case s.resealKick <- struct{}{}:
	default:
	}
	return &clusterv1.RotateRootKeyResponse{TargetRootKeyId: target.ID(), Remaining: s.countNotUnder(target.ID())}, nil
}

// sealedByRootKey counts the state's sealed blobs by the root-key ID each
// names ("" for blobs of the first seal format), sorted by ID.
func (s *Server) sealedByRootKey() []*clusterv1.RootKeyUsage {
	counts := map[string]uint64{}
	s.fsm.SealedBlobs(func(b fsm.SealedBlob) bool {
		id, _ := keycrypto.SealedRootKeyID(b.Sealed)
		counts[id]++
		return true
	})
	out := make([]*clusterv1.RootKeyUsage, 0, len(counts))
	for id, n := range counts {
		out = append(out, &clusterv1.RootKeyUsage{RootKeyId: id, SealedCount: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].RootKeyId < out[j].RootKeyId })
	return out
}

// countNotUnder counts the sealed blobs not sealed under root key id.
func (s *Server) countNotUnder(id string) uint64 {
	var n uint64
	s.fsm.SealedBlobs(func(b fsm.SealedBlob) bool {
		if got, _ := keycrypto.SealedRootKeyID(b.Sealed); got != id {
			n++
		}
		return true
	})
	return n
}

// RunReseal is the leader's re-seal loop: while the state records a
// requested root-key rotation and this node may propose leader events
// (ClockReady), it re-seals what is not under the target key. It runs until
// ctx ends, waking every resealInterval, on a leadership change and when
// RotateRootKey asks.
func (s *Server) RunReseal(ctx context.Context) {
	lead, cancel := s.node.SubscribeLeadership()
	defer cancel()
	tick := time.NewTicker(resealInterval)
	defer tick.Stop()
	for {
		s.resealRound(ctx)
		select {
		case <-ctx.Done():
			return
		case _, ok := <-lead:
			if !ok {
				return
			}
		case <-s.resealKick:
		case <-tick.C:
		}
	}
}

// resealRound re-seals up to resealBatch blobs, resealInFlight at once, or
// completes the rotation when none is left.
func (s *Server) resealRound(ctx context.Context) {
	target, _ := s.fsm.RootKeyRotation()
	if target == "" || !s.ClockReady() {
		return
	}
	if s.root.SealingKeyID() != target {
		s.resealWarn.Do(func() {
			s.log.Warn("a root-key rotation is requested but this leader's root keyring seals under another key; restart it with the target key last in its root key file",
				"target_root_key_id", target, "sealing_root_key_id", s.root.SealingKeyID())
		})
		return
	}
	var todo []fsm.SealedBlob
	s.fsm.SealedBlobs(func(b fsm.SealedBlob) bool {
		if id, _ := keycrypto.SealedRootKeyID(b.Sealed); id != target {
			todo = append(todo, b)
		}
		return len(todo) < resealBatch
	})
	if len(todo) == 0 {
		_, err := s.proposeLeaderEvent(ctx, &eventsv1.Envelope{Event: &eventsv1.Envelope_CompleteRootKeyRotation{
			CompleteRootKeyRotation: &eventsv1.CompleteRootKeyRotation{TargetRootKeyId: target}}})
		if err == nil {
			s.log.Info("root-key rotation complete: the cluster's root key is now the target", "root_key_id", target)
		} else if !isConflict(err) {
			s.log.Warn("root-key rotation not completed; will retry", "error", err)
		}
		return
	}
	sem := make(chan struct{}, resealInFlight)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for _, b := range todo {
		if ctx.Err() != nil || !s.node.IsLeader() {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(b fsm.SealedBlob) {
			defer func() { <-sem; wg.Done() }()
			if err := s.resealOne(ctx, b); err != nil && !isConflict(err) {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}(b)
	}
	wg.Wait()
	if firstErr != nil {
		s.log.Warn("re-sealing under the new root key failed; will retry", "error", firstErr)
		return
	}
	select { // more may be left: go on without waiting for the tick
	case s.resealKick <- struct{}{}:
	default:
	}
}

// resealOne opens one blob with the root keyring and proposes it sealed
// under the ring's newest key, guarded by the old blob's SHA-256.
func (s *Server) resealOne(ctx context.Context, b fsm.SealedBlob) error {
	var plain, sealed []byte
	var err error
	switch b.Kind {
	case eventsv1.ResealKind_RESEAL_KIND_KEY_VERSION, eventsv1.ResealKind_RESEAL_KIND_STAGED_MATERIAL:
		// Staged material is sealed for the version it will become.
		if plain, err = s.root.Open(b.KeyID, b.Version, b.Sealed); err == nil {
			sealed, err = s.root.Seal(b.KeyID, b.Version, plain)
		}
	case eventsv1.ResealKind_RESEAL_KIND_IMPORT_PRIVATE_KEY:
		if plain, err = s.root.OpenPrivateKey(b.KeyID, b.TokenID, b.Sealed); err == nil {
			sealed, err = s.root.SealPrivateKey(b.KeyID, b.TokenID, plain)
		}
	case eventsv1.ResealKind_RESEAL_KIND_ACCESS_KEY_SECRET:
		if plain, err = s.root.OpenAccessKeySecret(b.AccessKeyID, b.Identity, b.Sealed); err == nil {
			sealed, err = s.root.SealAccessKeySecret(b.AccessKeyID, b.Identity, plain)
		}
	default:
		return errors.New("unknown sealed blob kind")
	}
	clear(plain)
	if err != nil {
		// The error names key IDs and root-key IDs, never material.
		return err
	}
	sum := sha256.Sum256(b.Sealed)
	_, err = s.proposeLeaderEvent(ctx, &eventsv1.Envelope{Event: &eventsv1.Envelope_ResealMaterial{ResealMaterial: &eventsv1.ResealMaterial{
		Kind: b.Kind, KeyId: b.KeyID, Version: b.Version, AccessKeyId: b.AccessKeyID, ExpectedSha256: sum[:], Sealed: sealed}}})
	return err
}

// proposeLeaderEvent proposes an event of the leader's own (no caller): the
// clock gate stamps it as it does every write.
func (s *Server) proposeLeaderEvent(ctx context.Context, env *eventsv1.Envelope) (*fsm.Result, error) {
	if err := s.stamp(ctx, env); err != nil {
		return nil, err
	}
	env.Principal = principalRootKeyRotation
	res, err := s.node.Propose(ctx, env)
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		return res, res.Err
	}
	return res, nil
}

// isConflict reports a guard rejection: the state moved on (a blob changed
// or was re-sealed already, the rotation was completed or replaced).
func isConflict(err error) bool {
	var r *fsm.Rejection
	return errors.As(err, &r) && (r.Code == fsm.CodeConflict || r.Code == fsm.CodeNotFound || r.Code == fsm.CodeInvalidState)
}
