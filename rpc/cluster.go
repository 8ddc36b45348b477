package rpc

import (
	"context"
	"time"

	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// clusterService implements ClusterService on top of Server.
type clusterService struct {
	clusterv1.UnimplementedClusterServiceServer
	*Server
}

// Register adds both services to a gRPC server.
func (s *Server) Register(gs *grpc.Server) {
	kmsv1.RegisterKeyManagementServiceServer(gs, kmsService{Server: s})
	clusterv1.RegisterClusterServiceServer(gs, clusterService{Server: s})
}

// Status is the answering node's view of the cluster.
func (s clusterService) Status(ctx context.Context, _ *clusterv1.StatusRequest) (*clusterv1.StatusResponse, error) {
	leaderID, _ := s.node.Leader()
	digest := s.fsm.Digest()
	resp := &clusterv1.StatusResponse{
		NodeId:       s.cfg.NodeID,
		State:        s.node.State(),
		LeaderId:     leaderID,
		AppliedIndex: s.node.AppliedIndex(),
		StateDigest:  digest[:],
		Term:         s.node.Term(),
		LastIndex:    s.node.LastIndex(),
	}
	if n, ok := s.fsm.Node(leaderID); ok {
		resp.LeaderGrpcAddr = n.GRPCAddr
	}
	s.fillClockStatus(resp)
	resp.MaxSchemaVersion = s.fsm.MaxSchema()
	if p, ok := s.node.(interface{ ProposeSchema() uint32 }); ok {
		resp.ClusterSchemaVersion = p.ProposeSchema()
	}
	resp.SealedByRootKey = s.sealedByRootKey()
	resp.RotatingToRootKeyId, _ = s.fsm.RootKeyRotation()
	members, err := s.node.Members()
	if err != nil {
		return nil, err
	}
	for _, m := range members {
		n, _ := s.fsm.Node(m.ID)
		resp.Members = append(resp.Members, &clusterv1.Member{NodeId: m.ID, RaftAddr: m.Addr, GrpcAddr: n.GRPCAddr, Voter: m.Voter})
	}
	return resp, nil
}

// Join adds a node as a voter (on the leader) and records its addresses.
func (s clusterService) Join(ctx context.Context, req *clusterv1.JoinRequest) (*clusterv1.JoinResponse, error) {
	if req.NodeId == "" || req.RaftAddr == "" || req.GrpcAddr == "" {
		return nil, validationErr("NodeId, RaftAddr and GrpcAddr are required")
	}
	if err := s.checkJoinRootKey(req); err != nil {
		return nil, err
	}
	if err := s.node.AddVoter(ctx, req.NodeId, req.RaftAddr); err != nil {
		return nil, err
	}
	if err := s.registerNode(ctx, req.NodeId, req.GrpcAddr, req.RaftAddr, req.RootKeyCheck, req.RootKeyId, req.MaxSchemaVersion); err != nil {
		return nil, err
	}
	return &clusterv1.JoinResponse{}, nil
}

func (s clusterService) Remove(ctx context.Context, req *clusterv1.RemoveRequest) (*clusterv1.RemoveResponse, error) {
	if req.NodeId == "" {
		return nil, validationErr("NodeId is required")
	}
	return &clusterv1.RemoveResponse{}, s.node.RemoveServer(ctx, req.NodeId)
}

func (s clusterService) TransferLeadership(ctx context.Context, req *clusterv1.TransferLeadershipRequest) (*clusterv1.TransferLeadershipResponse, error) {
	return &clusterv1.TransferLeadershipResponse{}, s.node.TransferLeadership(ctx, req.TargetNodeId)
}

// Snapshot makes the answering node take a Raft snapshot now.
func (s clusterService) Snapshot(ctx context.Context, _ *clusterv1.SnapshotRequest) (*clusterv1.SnapshotResponse, error) {
	if err := s.node.Snapshot(); err != nil {
		return nil, err
	}
	return &clusterv1.SnapshotResponse{Index: s.node.LastSnapshotIndex()}, nil
}

// ReadIndex answers a follower's read-index round (leader only).
func (s clusterService) ReadIndex(ctx context.Context, _ *clusterv1.ReadIndexRequest) (*clusterv1.ReadIndexResponse, error) {
	idx, err := s.node.ReadIndex(ctx)
	if err != nil {
		return nil, err
	}
	resp := &clusterv1.ReadIndexResponse{Index: idx}
	if ln, ok := s.node.(leaseNode); ok {
		resp.Term, resp.Visible = s.node.Term(), ln.VisibleIndex()
	}
	return resp, nil
}

// readIndexAttempt bounds one read-index call to the leader: a leader that
// died is given up on quickly, and the round asks whoever leads next.
const readIndexAttempt = time.Second

// remoteReadIndex asks the leader for a read index (a follower's round). It
// follows leadership changes until ctx ends; then it answers Unavailable, so
// clients retry.
func (s *Server) remoteReadIndex(ctx context.Context) (uint64, error) {
	var last error
	for {
		idx, err := s.readIndexOnce(ctx)
		if err == nil {
			return idx, nil
		}
		last = err
		if ctx.Err() != nil {
			return 0, unavailableErr("no read index from the leader (%v); retry", last)
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, unavailableErr("no read index from the leader (%v); retry", last)
		}
	}
}

func (s *Server) readIndexOnce(ctx context.Context) (uint64, error) {
	addr, err := s.leaderAddr()
	if err != nil {
		return 0, err
	}
	if addr == s.cfg.GRPCAddr {
		return s.node.ReadIndex(ctx)
	}
	conn, err := s.conn(addr)
	if err != nil {
		return 0, err
	}
	actx, cancel := context.WithTimeout(ctx, readIndexAttempt)
	defer cancel()
	resp, err := clusterv1.NewClusterServiceClient(conn).ReadIndex(actx, &clusterv1.ReadIndexRequest{})
	if err != nil {
		return 0, err
	}
	if ln, ok := s.node.(leaseNode); ok && resp.Term > 0 {
		ln.LeaseGranted(&clusterv1.LeaseGrant{Term: resp.Term, Visible: resp.Visible})
	}
	return resp.Index, nil
}

// registerNode proposes a RegisterNode event (on the leader), with the
// node's root-key check value and ID, and the newest event schema it
// understands.
func (s *Server) registerNode(ctx context.Context, id, grpcAddr, raftAddr string, check []byte, checkID string, schema uint32) error {
	ctx = withRequestID(ctx, "register/"+id+"/"+grpcAddr+"/"+raftAddr+"/"+newRequestID())
	_, err := s.propose(ctx, &eventsv1.Envelope{Event: &eventsv1.Envelope_RegisterNode{RegisterNode: &eventsv1.RegisterNode{
		NodeId: id, GrpcAddr: grpcAddr, RaftAddr: raftAddr, RootKeyCheck: check, RootKeyId: checkID, MaxSchemaVersion: schema}}})
	return err
}

// RegisterSelf makes sure the replicated state records this node's current
// gRPC address: proposed directly on the leader, or sent to the leader as a
// Join (which also adds the node as a voter if it is not one yet).
func (s *Server) RegisterSelf(ctx context.Context) error {
	if n, ok := s.fsm.Node(s.cfg.NodeID); ok && n.GRPCAddr == s.cfg.GRPCAddr && n.RaftAddr == s.node.Addr() && s.rootKeyRecorded() &&
		n.MaxSchema == s.fsm.MaxSchema() {
		return nil
	}
	if s.node.IsLeader() {
		check, checkID := s.rootKeyFields()
		return s.registerNode(ctx, s.cfg.NodeID, s.cfg.GRPCAddr, s.node.Addr(), check, checkID, s.fsm.MaxSchema())
	}
	addr, err := s.leaderAddr()
	if err != nil {
		return err
	}
	return s.JoinVia(ctx, addr, s.node.Addr())
}

// JoinVia asks a cluster member (any node; followers forward) to add this
// node as a voter and record its addresses.
func (s *Server) JoinVia(ctx context.Context, addr, raftAddr string) error {
	conn, err := s.conn(addr)
	if err != nil {
		return err
	}
	id := "join/" + s.cfg.NodeID + "/" + newRequestID()
	if len(id) > maxRequestID {
		id = "join/" + newRequestID() // a long node ID: the ID must stay valid
	}
	ctx = metadata.AppendToOutgoingContext(ctx, MDRequestID, id)
	check, checkID := s.rootKeyFields()
	_, err = clusterv1.NewClusterServiceClient(conn).Join(ctx, &clusterv1.JoinRequest{
		NodeId: s.cfg.NodeID, RaftAddr: raftAddr, GrpcAddr: s.cfg.GRPCAddr, RootKeyCheck: check, RootKeyId: checkID,
		MaxSchemaVersion: s.fsm.MaxSchema()})
	return err
}
