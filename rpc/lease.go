package rpc

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkms/raftkms/keycrypto"
	"github.com/raftkms/raftkms/pki"
	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Read modes of a node (kmsd --read-mode).
const (
	ReadModeLease     = "lease"      // serve linearizable reads under a read lease, the read index without one
	ReadModeReadIndex = "read-index" // a read-index round per batch of reads
	ReadModeStale     = "stale"      // serve from local state, no guarantee of freshness
)

// ParseReadMode checks a --read-mode value ("" is the default, lease).
func ParseReadMode(s string) (string, error) {
	switch s {
	case "", ReadModeLease:
		return ReadModeLease, nil
	case ReadModeReadIndex, ReadModeStale:
		return s, nil
	}
	return "", fmt.Errorf("read mode %q is not one of lease, read-index, stale", s)
}

// leaseNode is what the read-lease protocol needs of the Raft node (a
// *raftnode.Node; rpc's in-memory test node has none of it and always uses
// the read index).
type leaseNode interface {
	LeaseRead(ctx context.Context) (bool, error)
	WaitPending(ctx context.Context, keyIDs ...string) error
	WaitVisible(ctx context.Context, index uint64) error
	VisibleIndex() uint64
	LeaseServe(from string, req *clusterv1.LeaseRequest) *clusterv1.LeaseGrant
	LeaseNext(wantLease bool) *clusterv1.LeaseRequest
	LeaseGranted(g *clusterv1.LeaseGrant) bool
	LeaseChanged() <-chan struct{}
	LeasePush() *clusterv1.LeaseGrant
	LeaseAppended() <-chan struct{}
	LeaseDuration() time.Duration
}

// readCounts counts how this node served reads.
type readCounts struct {
	lease, index, stale, held atomic.Uint64
}

// ReadCounts reports reads served under a lease, after a read-index round,
// from local state (stale), and answers held until visible.
func (s *Server) ReadCounts() (lease, readIndex, stale, held uint64) {
	return s.reads.lease.Load(), s.reads.index.Load(), s.reads.stale.Load(), s.reads.held.Load()
}

// LeaseHolders is, on the leader, how many nodes hold a read lease.
func (s *Server) LeaseHolders() int {
	if ln, ok := s.node.(interface{ LeaseHolders() int }); ok {
		return ln.LeaseHolders()
	}
	return 0
}

// VisibleIndex is the visible index this node knows (0 without leases).
func (s *Server) VisibleIndex() uint64 {
	if ln, ok := s.node.(leaseNode); ok {
		return ln.VisibleIndex()
	}
	return 0
}

// readState is one read's bookkeeping: the keys its request names, and
// whether it read under the lease or the read index (and must then be held
// until what it saw is visible).
type readState struct {
	refs    []string // key references in the request (IDs, ARNs, aliases)
	blobIDs []string // key IDs named by ciphertexts in the request
	checked bool     // a linearizable barrier ran, or a write was answered here
}

func readStateOf(ctx context.Context) *readState {
	if ci := callOf(ctx); ci != nil {
		return ci.read
	}
	return nil
}

// newReadState collects the key references of a request: every string field
// whose name ends in key_id, and the key named by every ciphertext field.
func newReadState(req any) *readState {
	rs := &readState{}
	m, ok := req.(proto.Message)
	if !ok {
		return rs
	}
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.IsList() || fd.IsMap() {
			return true
		}
		name := string(fd.Name())
		switch {
		case fd.Kind() == protoreflect.StringKind && strings.HasSuffix(name, "key_id"):
			if ref := v.String(); ref != "" {
				rs.refs = append(rs.refs, ref)
			}
		case fd.Kind() == protoreflect.BytesKind && strings.HasSuffix(name, "ciphertext_blob"):
			if hdr, _, err := keycrypto.ParseCiphertext(v.Bytes()); err == nil && hdr.KeyID != "" {
				rs.blobIDs = append(rs.blobIDs, hdr.KeyID)
			}
		}
		return true
	})
	return rs
}

// keyIDs resolves the request's references against the local state. A
// reference that does not resolve is kept as it is: reads of it depend on
// alias changes, which every read waits for anyway (fsm.ModIndex). A request
// that names no key gives nil: it depends on everything.
func (s *Server) keyIDs(rs *readState) []string {
	ids, _ := s.resolveRefs(rs)
	return ids
}

// resolveRefs is keyIDs, and whether any reference named a key other than
// by its ID (an alias or an ARN), whose resolution may move.
func (s *Server) resolveRefs(rs *readState) (ids []string, indirect bool) {
	if rs == nil || len(rs.refs)+len(rs.blobIDs) == 0 {
		return nil, false
	}
	ids = make([]string, 0, len(rs.refs)+len(rs.blobIDs)+1)
	ids = append(ids, rs.blobIDs...)
	for _, ref := range rs.refs {
		if k, err := s.fsm.ResolveKey(ref); err == nil {
			ids = append(ids, k.ID)
			indirect = indirect || k.ID != ref
		} else {
			ids = append(ids, ref)
			indirect = true
		}
	}
	// "" stands for "nothing but what is not tied to one key": it keeps a
	// request whose references all failed to parse from depending on no key.
	return append(ids, ""), indirect
}

// leaseBarrier is the lease-mode read barrier: with a valid lease the node
// waits only for its own appended entries that the read depends on. It
// reports false when there is no valid lease.
//
// An alias resolves to the key it names in the applied state, which may lag
// an acknowledged move of the alias; so once the pending entries of what it
// resolved to are applied, the references are resolved again, and if they
// now name other keys, those keys' pending entries are waited for too.
func (s *Server) leaseBarrier(ctx context.Context, ln leaseNode) (bool, error) {
	ok, err := ln.LeaseRead(ctx)
	if err != nil || !ok {
		return false, err
	}
	rs := readStateOf(ctx)
	ids, indirect := s.resolveRefs(rs)
	for range 3 {
		if err := ln.WaitPending(ctx, ids...); err != nil || !indirect {
			return true, err
		}
		again := s.keyIDs(rs)
		if slices.Equal(again, ids) {
			return true, nil
		}
		ids = again
	}
	// Aliases still moving: wait for everything in the log.
	return true, ln.WaitPending(ctx)
}

// holdRead keeps an answer (of a linearizable read, or of a write answered
// here) until the cluster has made visible the last change of what it looked
// at (see raftnode/lease.go). When no push of the visible index arrives for a
// lease duration, it asks the leader.
func (s *Server) holdRead(ctx context.Context, rs *readState) error {
	ln, ok := s.node.(leaseNode)
	if !ok || rs == nil || !rs.checked {
		return nil
	}
	need := s.fsm.ModIndex(s.keyIDs(rs)...)
	if ln.VisibleIndex() >= need {
		return nil
	}
	s.reads.held.Add(1)
	hctx, cancel := context.WithTimeout(ctx, s.readIdx.timeout)
	defer cancel()
	for {
		wctx, wcancel := context.WithTimeout(hctx, ln.LeaseDuration())
		err := ln.WaitVisible(wctx, need)
		wcancel()
		if err == nil {
			return nil
		}
		if hctx.Err() != nil {
			return unavailableErr("the read cannot be confirmed as visible on every node; retry")
		}
		if _, err := s.readIndexOnce(hctx); err != nil {
			return unavailableErr("the read cannot be confirmed as visible on every node (%v); retry", err)
		}
	}
}

// Lease serves a node's lease stream (leader side; DESIGN §5). Only a node
// certificate may open it, and only for the node it names.
func (s clusterService) Lease(stream clusterv1.ClusterService_LeaseServer) (err error) {
	ctx := stream.Context()
	m, err := lookupMethod(clusterv1.ClusterService_Lease_FullMethodName)
	if err != nil {
		return toStatus(err)
	}
	c, err := s.identify(ctx, incomingOf(ctx))
	if err == nil {
		err = s.authorizeMethod(c, m, nil)
	}
	if err != nil {
		return toStatus(err)
	}
	ln, ok := s.node.(leaseNode)
	if !ok {
		return toStatus(internalErr("this node does not grant read leases"))
	}
	from := c.nodeID
	if s.cfg.Auth.Enabled && (c.role != pki.RoleNode || from == "" || c.via != "") {
		return toStatus(accessDenied("only a node may open the lease stream"))
	}
	reqs := make(chan *clusterv1.LeaseRequest, 16)
	recvErr := make(chan error, 1)
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		changed := ln.LeaseChanged()
		select {
		case r := <-reqs:
			if s.cfg.Auth.Enabled && r.NodeId != from {
				return toStatus(accessDenied("a node certificate for %s cannot renew the lease of %s", from, r.NodeId))
			}
			if err := stream.Send(ln.LeaseServe(r.NodeId, r)); err != nil {
				return err
			}
		case <-changed:
			if err := stream.Send(ln.LeasePush()); err != nil {
				return err
			}
		case <-recvErr:
			return nil // the node went away; it reopens the stream
		case <-ctx.Done():
			return nil
		case <-s.stop:
			return nil
		}
	}
}

// leaseLoop keeps this node's lease stream to the leader open (every node
// runs it, whatever its read mode: the leader's confirmation rounds and the
// visible index travel on it).
func (s *Server) leaseLoop(ln leaseNode, stop <-chan struct{}) {
	backoff := 20 * time.Millisecond
	for {
		select {
		case <-stop:
			return
		default:
		}
		addr, err := s.leaderAddr()
		if err == nil && addr != s.cfg.GRPCAddr {
			err = s.leaseStream(ln, addr, stop)
		}
		if err == nil {
			backoff = 20 * time.Millisecond
		} else {
			backoff = min(backoff*2, ln.LeaseDuration()/4)
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-stop:
			t.Stop()
			return
		}
	}
}

// leaseStream runs one stream to the leader at addr until it fails, the
// leader changes, or stop.
func (s *Server) leaseStream(ln leaseNode, addr string, stop <-chan struct{}) error {
	conn, err := s.conn(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := clusterv1.NewClusterServiceClient(conn).Lease(ctx)
	if err != nil {
		return err
	}
	want := s.readMode == ReadModeLease
	var sendMu sync.Mutex
	send := func() error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(ln.LeaseNext(want))
	}
	ackNow := make(chan struct{}, 1)
	recvErr := make(chan error, 1)
	go func() {
		for {
			g, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			if ln.LeaseGranted(g) {
				select {
				case ackNow <- struct{}{}:
				default:
				}
			}
		}
	}()
	if err := send(); err != nil {
		return err
	}
	renew := time.NewTicker(ln.LeaseDuration() / 4)
	defer renew.Stop()
	for {
		appended := ln.LeaseAppended()
		select {
		case <-renew.C:
			if cur, err := s.leaderAddr(); err != nil || cur != addr {
				return nil // leadership moved: reconnect
			}
		case <-appended:
		case <-ackNow:
		case err := <-recvErr:
			return err
		case <-stop:
			return nil
		}
		if err := send(); err != nil {
			return err
		}
	}
}
