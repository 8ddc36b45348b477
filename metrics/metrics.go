// Package metrics exposes a raftkms node's Prometheus metrics: a registry per
// node with the gRPC API's per-method counters and latency histograms (from
// the go-grpc-middleware Prometheus provider), the AWS-protocol front's, the
// read-index rounds', Raft's (hashicorp/raft's own go-metrics through a
// Prometheus sink, plus per-node gauges read from Raft's stats), the rotation
// scheduler's and the keys by state and origin; and the HTTP listener that
// serves them on /metrics, with Go's pprof handlers when asked for.
//
// Labels are bounded and never carry key IDs, key material, plaintext or
// secrets: methods, operations, codes, states and origins only.
package metrics

import (
	"sync"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	gometrics "github.com/hashicorp/go-metrics/compat"
	gmprom "github.com/hashicorp/go-metrics/compat/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Namespace prefixes every raftkms metric.
const Namespace = "raftkms"

// latencyBuckets suit calls that take from a fraction of a millisecond (a
// local Encrypt) to seconds (a write across an election).
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Registry holds one node's metrics.
type Registry struct {
	reg  *prometheus.Registry
	grpc *grpcprom.ServerMetrics
	aws  awsMetrics
	read readIndexMetrics
}

// New makes a node's registry with the Go runtime and process collectors,
// the gRPC server metrics and Raft's go-metrics sink registered.
func New() (*Registry, error) {
	r := &Registry{reg: prometheus.NewRegistry()}
	r.grpc = grpcprom.NewServerMetrics(
		grpcprom.WithServerCounterOptions(grpcprom.WithNamespace(Namespace)),
		grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramNamespace(Namespace),
			grpcprom.WithHistogramBuckets(latencyBuckets)),
	)
	r.aws = newAWSMetrics()
	r.read = newReadIndexMetrics()
	sink, err := raftSink()
	if err != nil {
		return nil, err
	}
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		r.grpc, sink,
		r.aws.requests, r.aws.latency,
		r.read.rounds, r.read.callers, r.read.latency,
	} {
		if err := r.reg.Register(c); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Register adds a collector (the node's Raft, key and scheduler collectors).
func (r *Registry) Register(c prometheus.Collector) error { return r.reg.Register(c) }

// Gatherer is the registry, for the HTTP handler and tests.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// GRPC is the gRPC server metrics: chain its UnaryServerInterceptor and
// StreamServerInterceptor into grpc.NewServer, then InitializeMetrics with
// the server so every method is exported at zero.
func (r *Registry) GRPC() *grpcprom.ServerMetrics { return r.grpc }

var (
	sinkOnce sync.Once
	sink     *gmprom.PrometheusSink
	sinkErr  error
)

// raftSink is the process's go-metrics sink. hashicorp/raft reports through
// go-metrics' global registry, which is one per process, so every node in a
// process (kmsd dev, tests) shares this sink and its raftkms_raft_* series
// are the sum over those nodes; a `kmsd serve` process holds one node.
// The compat packages follow the same build tag as hashicorp/raft itself
// (armon/go-metrics by default, hashicorp/go-metrics with -tags
// hashicorpmetrics), so the sink always receives what raft emits.
func raftSink() (*gmprom.PrometheusSink, error) {
	sinkOnce.Do(func() {
		// Registered with each node's registry by New, not with the default
		// registry.
		sink, sinkErr = gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{
			Registerer: prometheus.NewRegistry(),
			Expiration: 5 * time.Minute,
		})
		if sinkErr != nil {
			return
		}
		cfg := gometrics.DefaultConfig(Namespace)
		cfg.EnableHostname = false
		cfg.EnableHostnameLabel = false
		cfg.EnableRuntimeMetrics = false // the Go collector has them
		cfg.EnableServiceLabel = false
		_, sinkErr = gometrics.NewGlobal(cfg, sink)
	})
	return sink, sinkErr
}
