package server_test

import (
	"context"
	"crypto/rand"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/raftkms/raftkms/keycrypto"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/server"
	"github.com/raftkms/raftkms/testcluster"
)

// scrape fetches and parses a node's /metrics.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value is the sum of a family's samples whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
	sum := 0.0
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		ok := true
		for k, v := range want {
			ok = ok && labels[k] == v
		}
		if !ok {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		case m.Summary != nil:
			sum += float64(m.Summary.GetSampleCount())
		}
	}
	return sum
}

// A running node's /metrics has every raftkms family, and they move with
// the calls it serves: gRPC counts and latencies by method and code, keys by
// state and origin, read-index rounds on a follower, Raft's gauges and
// hashicorp/raft's own metrics.
func TestMetricsScrape(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI(testcluster.WithMetrics()))
	c.WaitServing(t)
	leader := c.WaitForLeader(t)
	f := (leader + 1) % c.N()
	addr := c.Server(f).MetricsAddr()
	if addr == "" {
		t.Fatal("node has no metrics address")
	}
	before := scrape(t, addr)
	reads := func() float64 { // linearizable reads served by every node
		sum := 0.0
		for i := 0; i < c.N(); i++ {
			fams := scrape(t, c.Server(i).MetricsAddr())
			// Linearizable reads, under a lease or after a read-index round.
			sum += max(0, value(fams, "raftkms_reads_total", map[string]string{"mode": "lease"}))
			sum += max(0, value(fams, "raftkms_reads_total", map[string]string{"mode": "read_index"}))
		}
		return sum
	}
	readsBefore := reads()
	for _, name := range []string{
		"raftkms_grpc_server_started_total", "raftkms_grpc_server_handled_total", "raftkms_grpc_server_handling_seconds",
		"raftkms_raft_state", "raftkms_raft_term", "raftkms_raft_commit_index", "raftkms_raft_applied_index",
		"raftkms_raft_last_contact_seconds", "raftkms_raft_has_leader", "raftkms_keys",
		"raftkms_scheduler_due", "raftkms_scheduler_overdue", "raftkms_scheduler_oldest_overdue_rotation_seconds",
		"raftkms_scheduler_proposals_in_flight", "go_goroutines", "raftkms_reads_total", "raftkms_lease_visible_index",
	} {
		if before[name] == nil {
			t.Errorf("family %s missing", name)
		}
	}
	if v := value(before, "raftkms_raft_state", nil); v != 1 {
		t.Errorf("raftkms_raft_state sums to %v over the states, want 1 (one state at a time)", v)
	}
	created := map[string]string{"grpc_method": "CreateKey", "grpc_code": "OK"}
	enabled := map[string]string{"state": "Enabled", "origin": "AWS_KMS"}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const n = 3
	for i := 0; i < n; i++ {
		resp, err := c.KMS(f).CreateKey(ctx, &kmsv1.CreateKeyRequest{Description: "metrics"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.KMS(f).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: resp.KeyMetadata.KeyId, Plaintext: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.KMS(f).DescribeKey(ctx, &kmsv1.DescribeKeyRequest{KeyId: "alias/none"}); err == nil {
		t.Fatal("DescribeKey of a missing alias succeeded")
	}
	after := scrape(t, addr)
	rise := func(name string, labels map[string]string, by float64) {
		t.Helper()
		b, a := max(0, value(before, name, labels)), value(after, name, labels)
		if a-b < by {
			t.Errorf("%s%v went from %v to %v, want a rise of at least %v", name, labels, b, a, by)
		}
	}
	rise("raftkms_grpc_server_handled_total", created, n)
	rise("raftkms_grpc_server_handling_seconds", map[string]string{"grpc_method": "Encrypt"}, n)
	rise("raftkms_grpc_server_handled_total", map[string]string{"grpc_method": "DescribeKey", "grpc_code": "NotFound"}, 1)
	rise("raftkms_keys", enabled, n)
	rise("raftkms_raft_applied_index", nil, n)
	if r := reads(); r < readsBefore+n {
		t.Errorf("linearizable reads over the cluster went from %v to %v after %d linearizable Encrypts", readsBefore, r, n)
	}

	// hashicorp/raft's own metrics arrive through the go-metrics sink
	// (apply and commit timings; the process's nodes share it).
	var raftOwn []string
	for name := range after {
		if strings.HasPrefix(name, "raftkms_raft_") && after[name].GetType() == dto.MetricType_SUMMARY {
			raftOwn = append(raftOwn, name)
		}
	}
	if len(raftOwn) == 0 {
		t.Error("no summaries from hashicorp/raft's go-metrics")
	}
	for name := range after {
		for _, m := range after[name].Metric {
			for _, l := range m.Label {
				if strings.Contains(strings.ToLower(l.GetName()), "key_id") {
					t.Errorf("%s has a key ID label", name)
				}
			}
		}
	}
}

// The AWS-protocol front counts requests by operation and AWS error type.
func TestMetricsAWS(t *testing.T) {
	root, err := keycrypto.GenerateRootKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	l, err := server.StartLocal(server.LocalConfig{Nodes: 1, Dir: t.TempDir(), RootKey: root, AWSPort: -1, MetricsPort: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Stop)
	addr := l.Server(0).MetricsAddr()
	unsigned := map[string]string{"operation": "ListKeys", "code": "MissingAuthenticationTokenException"}
	before := max(0, value(scrape(t, addr), "raftkms_aws_requests_total", unsigned))
	const n = 2
	for i := 0; i < n; i++ {
		req, err := http.NewRequest(http.MethodPost, l.AWSEndpoints()[0], strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Amz-Target", "TrentService.ListKeys")
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	after := scrape(t, addr)
	if got := value(after, "raftkms_aws_requests_total", unsigned) - before; got != n {
		t.Fatalf("raftkms_aws_requests_total%v rose by %v, want %d (families: %v)", unsigned, got, n, after["raftkms_aws_requests_total"])
	}
	if value(after, "raftkms_aws_request_duration_seconds", map[string]string{"operation": "ListKeys"}) < n {
		t.Fatal("raftkms_aws_request_duration_seconds did not count the requests")
	}
}
