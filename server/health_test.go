package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/raftkms/raftkms/testcluster"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

var services = []string{"", "raftkms.kms.v1.KeyManagementService", "raftkms.cluster.v1.ClusterService"}

// waitHealth polls node addr until every service answers want.
func waitHealth(t *testing.T, addr string, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	deadline := time.Now().Add(testcluster.WaitTimeout)
	for {
		got := map[string]healthpb.HealthCheckResponse_ServingStatus{}
		all := true
		for _, name := range services {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: name})
			cancel()
			if err != nil {
				t.Fatalf("health of %q: %v", name, err)
			}
			got[name] = resp.Status
			all = all && resp.Status == want
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("health of %s: %v, want every service %v", addr, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Every service name answers SERVING on a healthy node and NOT_SERVING once
// the node has lost its leader; an unknown name is NotFound.
func TestHealthPerService(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI())
	c.WaitServing(t)
	for i := 0; i < c.N(); i++ {
		waitHealth(t, c.GRPCAddr(i), healthpb.HealthCheckResponse_SERVING)
	}
	cc, err := grpc.NewClient(c.GRPCAddr(0), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "no.such.Service"}); err == nil {
		t.Fatal("an unknown service name answered")
	}

	// The node left alone has no leader: it says so to every health check.
	c.Isolate(0)
	waitHealth(t, c.GRPCAddr(0), healthpb.HealthCheckResponse_NOT_SERVING)
	c.Heal()
	waitHealth(t, c.GRPCAddr(0), healthpb.HealthCheckResponse_SERVING)
}
