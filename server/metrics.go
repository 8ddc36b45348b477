package server

import (
	"path/filepath"

	"github.com/raftkms/raftkms/metrics"
	"github.com/raftkms/raftkms/rotation"
	"google.golang.org/grpc"
)

// newMetrics makes the node's metrics registry when a metrics address is
// configured (nil otherwise) and the gRPC server options that feed it.
func (s *Server) newMetrics() ([]grpc.ServerOption, error) {
	if s.cfg.MetricsAddr == "" {
		return nil, nil
	}
	reg, err := metrics.New()
	if err != nil {
		return nil, err
	}
	s.metrics = reg
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(reg.GRPC().UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(reg.GRPC().StreamServerInterceptor()),
	}, nil
}

// startMetrics registers the node's collectors and starts the metrics
// listener, once the gRPC services, the Raft node and the scheduler exist.
func (s *Server) startMetrics(sched *rotation.Scheduler) error {
	if s.metrics == nil {
		return nil
	}
	s.metrics.GRPC().InitializeMetrics(s.grpc)
	s.api.ObserveReadIndex(s.metrics.ObserveReadIndex)
	err := s.metrics.Register(metrics.NewNodeCollector(metrics.NodeSources{
		Raft:        s.node,
		Keys:        s.fsm,
		Scheduler:   sched,
		Reads:       s.api,
		SnapshotDir: filepath.Join(s.cfg.DataDir, "snapshots"),
		Now:         s.cfg.Now,
	}))
	if err != nil {
		return err
	}
	s.metricsLis, err = metrics.Listen(metrics.ListenerConfig{
		Addr:     s.cfg.MetricsAddr,
		Registry: s.metrics,
		PProf:    s.cfg.PProf,
		Logger:   s.log.Named("metrics"),
	})
	if err != nil {
		return err
	}
	s.log.Info("metrics listening", "addr", s.metricsLis.Addr(), "pprof", s.cfg.PProf)
	return nil
}

// Metrics is the node's metrics registry, nil when metrics are off. The
// AWS-protocol front records its requests with Metrics().ObserveAWS.
func (s *Server) Metrics() *metrics.Registry { return s.metrics }

// MetricsAddr is the metrics listener's address, "" when metrics are off.
func (s *Server) MetricsAddr() string {
	if s.metricsLis == nil {
		return ""
	}
	return s.metricsLis.Addr()
}
