package testcluster

// WithMetrics serves every node's Prometheus metrics on a free loopback port;
// Server(i).MetricsAddr() says where.
func WithMetrics() APIOption { return func(a *apiOptions) { a.metrics = true } }

func (a *apiOptions) metricsAddr() string {
	if a.metrics {
		return "127.0.0.1:0"
	}
	return ""
}
