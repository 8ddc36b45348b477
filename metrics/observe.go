package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type awsMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newAWSMetrics() awsMetrics {
	return awsMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "aws", Name: "requests_total",
			Help: "Requests to the AWS-protocol front by operation and outcome (OK or the AWS error type).",
		}, []string{"operation", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "aws", Name: "request_duration_seconds",
			Help: "Time to answer a request of the AWS-protocol front, by operation.", Buckets: latencyBuckets,
		}, []string{"operation"}),
	}
}

// ObserveAWS records one request of the AWS-protocol front. operation is an
// AWS KMS operation name the front knows, or "unknown"; errType is the AWS
// error type answered ("" for success). Both come from fixed sets, so the
// labels stay bounded.
func (r *Registry) ObserveAWS(operation, errType string, took time.Duration) {
	code := errType
	if code == "" {
		code = "OK"
	}
	r.aws.requests.WithLabelValues(operation, code).Inc()
	r.aws.latency.WithLabelValues(operation).Observe(took.Seconds())
}

type readIndexMetrics struct {
	rounds  *prometheus.CounterVec
	callers prometheus.Histogram
	latency prometheus.Histogram
}

func newReadIndexMetrics() readIndexMetrics {
	return readIndexMetrics{
		rounds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "read_index", Name: "rounds_total",
			Help: "Read-index rounds a follower ran against the leader, by result (ok, error).",
		}, []string{"result"}),
		callers: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "read_index", Name: "round_callers",
			Help:    "Reads that shared one read-index round.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "read_index", Name: "round_duration_seconds",
			Help: "Time of one read-index round (asking the leader for its confirmed commit index).", Buckets: latencyBuckets,
		}),
	}
}

// ObserveReadIndex records one read-index round shared by callers reads.
func (r *Registry) ObserveReadIndex(callers int, took time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	r.read.rounds.WithLabelValues(result).Inc()
	r.read.callers.Observe(float64(callers))
	r.read.latency.Observe(took.Seconds())
}
