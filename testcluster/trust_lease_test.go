package testcluster_test

import (
	"errors"
	"io"
	"testing"

	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	"github.com/raftkms/raftkms/testcluster"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
)

// TestTrustLeaseStream: only a node may open the lease stream, and only for
// itself. A client or admin certificate is refused; a node certificate that
// renews another node's lease (to make the leader count a holder that is not
// there, or to drop one that is) is refused; the leader's holders are as
// before.
func TestTrustLeaseStream(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI(testcluster.WithTLS()))
	c.WaitServing(t)
	ctx := apiCtx(t)
	l := c.WaitForLeader(t)
	f, other := (l+1)%3, (l+2)%3

	for _, who := range []string{"app", "admin"} {
		cl := clusterv1.NewClusterServiceClient(c.DialWith(l, c.ClientCreds(who)))
		stream, err := cl.Lease(ctx)
		if err == nil {
			// A Send after the server refused the stream says only EOF;
			// Recv gives the status.
			_ = stream.Send(&clusterv1.LeaseRequest{NodeId: c.ID(f), Seq: 1, WantLease: true, Term: c.Node(l).Term()})
			_, err = stream.Recv()
		}
		wantErr(t, who+" opens the lease stream", err, codes.PermissionDenied, "AccessDeniedException")
	}

	// Node f's certificate renews node other's lease.
	nodeCreds := credentials.NewTLS(c.NodeTLS(c.ID(f)).Client)
	cl := clusterv1.NewClusterServiceClient(c.DialWith(l, nodeCreds))
	stream, err := cl.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&clusterv1.LeaseRequest{NodeId: c.ID(other), Seq: 1, WantLease: true, Term: c.Node(l).Term(),
		AppendedIndex: 1 << 40, AppendedTerm: c.Node(l).Term()}); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	wantErr(t, "a node renews another node's lease", err, codes.PermissionDenied, "AccessDeniedException")

	// The same certificate for itself is served.
	stream, err = cl.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&clusterv1.LeaseRequest{NodeId: c.ID(f), Seq: 1, Term: c.Node(l).Term()}); err != nil {
		t.Fatal(err)
	}
	g, err := stream.Recv()
	if err != nil {
		t.Fatalf("a node renewing its own lease: %v", err)
	}
	if g.Term != c.Node(l).Term() {
		t.Fatalf("grant for term %d, leader in term %d", g.Term, c.Node(l).Term())
	}
}
