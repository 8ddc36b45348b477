package server

import (
	"time"

	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// DefaultHealthMaxLag is how many committed entries a node may have left to
// apply and still answer SERVING.
const DefaultHealthMaxLag = 1024

// healthEvery is how often the health watcher looks at the node.
const healthEvery = 200 * time.Millisecond

// healthServices are the service names the node answers health checks for:
// the whole server ("") and each API service.
var healthServices = []string{
	"",
	kmsv1.KeyManagementService_ServiceDesc.ServiceName,
	clusterv1.ClusterService_ServiceDesc.ServiceName,
}

// healthy reports whether the node should answer SERVING, and why not: it
// has registered with the cluster, knows a leader, and has applied all but
// a few of the entries it knows are committed.
func (s *Server) healthy() (bool, string) {
	if err := s.Err(); err != nil {
		return false, "refused to serve: " + err.Error()
	}
	if !s.serving.Load() {
		return false, "not registered with the cluster yet"
	}
	if id, _ := s.node.Leader(); id == "" {
		return false, "no leader"
	}
	if commit, applied := s.node.CommitIndex(), s.node.AppliedIndex(); commit > applied && commit-applied > s.maxLag() {
		return false, "applying the log behind the commit index"
	}
	return true, ""
}

func (s *Server) maxLag() uint64 {
	if s.cfg.HealthMaxLag > 0 {
		return s.cfg.HealthMaxLag
	}
	return DefaultHealthMaxLag
}

// watchHealth keeps the gRPC health status of every service current until
// the node stops.
func (s *Server) watchHealth() {
	t := time.NewTicker(healthEvery)
	defer t.Stop()
	last, lastWhy := false, "starting"
	for {
		ok, why := s.healthy()
		if ok != last || why != lastWhy {
			st := healthpb.HealthCheckResponse_NOT_SERVING
			if ok {
				st = healthpb.HealthCheckResponse_SERVING
			}
			for _, name := range healthServices {
				s.health.SetServingStatus(name, st)
			}
			if ok {
				s.log.Info("health: serving")
			} else {
				s.log.Info("health: not serving", "reason", why)
			}
			last, lastWhy = ok, why
		}
		select {
		case <-t.C:
		case <-s.ctx.Done():
			return
		}
	}
}
