package testcluster_test

import (
	"strings"
	"testing"

	"github.com/raftkms/raftkms/fsm"
	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/rpc"
	"github.com/raftkms/raftkms/testcluster"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// TestTrustBoundariesAPI drives issue 12's rpc items through a mutual-TLS
// 3-node cluster, calling followers so forwarding is on the path: an alias
// cannot be hijacked (item 3), a request ID that is not valid is refused
// (item 4), a node joins only as itself (item 7), node-to-node calls and
// forwarding metadata are for nodes only (item 1), and invalid UTF-8 is a
// ValidationException.
func TestTrustBoundariesAPI(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithAPI(testcluster.WithTLS()))
	c.WaitServing(t)
	ctx := apiCtx(t)
	l := c.WaitForLeader(t)
	f := (l + 1) % 3
	owner, attacker := c.KMSAs(f, "owner"), c.KMSAs(f, "attacker")

	t.Run("alias hijack", func(t *testing.T) {
		mine := createKey(t, owner, "owner's key")
		theirs := createKey(t, attacker, "attacker's key")
		must[*kmsv1.CreateAliasResponse](t, "CreateAlias")(owner.CreateAlias(ctx, &kmsv1.CreateAliasRequest{AliasName: "alias/payments", TargetKeyId: mine}))
		_, err := attacker.UpdateAlias(ctx, &kmsv1.UpdateAliasRequest{AliasName: "alias/payments", TargetKeyId: theirs})
		wantErr(t, "attacker re-points the owner's alias", err, codes.PermissionDenied, "AccessDeniedException")
		_, err = attacker.DeleteAlias(ctx, &kmsv1.DeleteAliasRequest{AliasName: "alias/payments"})
		wantErr(t, "attacker deletes the owner's alias", err, codes.PermissionDenied, "AccessDeniedException")
		c.WaitConverged(t)
		for i := range 3 {
			if k, err := c.FSM(i).ResolveKey("alias/payments"); err != nil || k.ID != mine {
				t.Fatalf("node %d: alias/payments resolves to %v (%v), want the owner's key", i, k, err)
			}
		}
		// The owner's next Encrypt through the alias lands under its own key.
		enc := must[*kmsv1.EncryptResponse](t, "Encrypt")(owner.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: "alias/payments", Plaintext: []byte("card")}))
		if !strings.HasSuffix(enc.KeyId, mine) {
			t.Fatalf("encrypted under %s, want %s", enc.KeyId, mine)
		}
		// The owner of both keys may re-point.
		second := createKey(t, owner, "owner's second key")
		must[*kmsv1.UpdateAliasResponse](t, "owner UpdateAlias")(owner.UpdateAlias(ctx, &kmsv1.UpdateAliasRequest{AliasName: "alias/payments", TargetKeyId: second}))
	})

	t.Run("request IDs", func(t *testing.T) {
		key := createKey(t, owner, "request IDs")
		for _, id := range []string{strings.Repeat("r", 200), "spaces are not allowed"} {
			_, err := owner.DisableKey(metadata.AppendToOutgoingContext(ctx, rpc.MDRequestID, id), &kmsv1.DisableKeyRequest{KeyId: key})
			wantErr(t, "request ID "+id[:10]+"…", err, codes.InvalidArgument, "ValidationException")
		}
		// EnableKey then DisableKey with one request ID: the second is
		// refused, not acknowledged without effect.
		idCtx := metadata.AppendToOutgoingContext(ctx, rpc.MDRequestID, "reused-id-1")
		must[*kmsv1.EnableKeyResponse](t, "EnableKey")(owner.EnableKey(idCtx, &kmsv1.EnableKeyRequest{KeyId: key}))
		_, err := owner.DisableKey(idCtx, &kmsv1.DisableKeyRequest{KeyId: key})
		wantErr(t, "DisableKey reusing EnableKey's request ID", err, codes.FailedPrecondition, "IdempotentParameterMismatchException")
		// Another identity reusing the owner's CreateKey ID gets a key of
		// its own, never the owner's answer.
		createCtx := metadata.AppendToOutgoingContext(ctx, rpc.MDRequestID, "reused-create-1")
		mine := must[*kmsv1.CreateKeyResponse](t, "owner CreateKey")(owner.CreateKey(createCtx, &kmsv1.CreateKeyRequest{}))
		theirs := must[*kmsv1.CreateKeyResponse](t, "attacker CreateKey")(c.KMSAs(l, "attacker").CreateKey(createCtx, &kmsv1.CreateKeyRequest{}))
		if mine.KeyMetadata.KeyId == theirs.KeyMetadata.KeyId {
			t.Fatalf("the attacker reusing the owner's request ID received the owner's key %s", mine.KeyMetadata.KeyId)
		}
		c.WaitConverged(t)
		for i := range 3 {
			if k, _ := c.FSM(i).Key(key); k.State != fsm.KeyStateEnabled {
				t.Fatalf("node %d: refused calls left the key %s", i, fsm.StateName(k.State))
			}
		}
	})

	t.Run("join only as itself", func(t *testing.T) {
		// A node's certificate (node l's) asks a follower to re-point
		// another member, and to add a member it is not.
		other := (l + 2) % 3
		nodeCreds := credentials.NewTLS(c.NodeTLS(c.ID(l)).Client)
		joiner := clusterv1.NewClusterServiceClient(c.DialWith(f, nodeCreds))
		before, _ := c.FSM(l).Node(c.ID(other))
		_, err := joiner.Join(ctx, &clusterv1.JoinRequest{NodeId: c.ID(other), RaftAddr: "127.0.0.1:1", GrpcAddr: "127.0.0.1:2"})
		wantErr(t, "re-pointing another member", err, codes.PermissionDenied, "AccessDeniedException")
		_, err = joiner.Join(ctx, &clusterv1.JoinRequest{NodeId: "node9", RaftAddr: "127.0.0.1:1", GrpcAddr: "127.0.0.1:2"})
		wantErr(t, "joining as another node", err, codes.PermissionDenied, "AccessDeniedException")
		c.WaitConverged(t)
		if after, _ := c.FSM(l).Node(c.ID(other)); after != before {
			t.Fatalf("%s's addresses changed from %+v to %+v", c.ID(other), before, after)
		}
		st := must[*clusterv1.StatusResponse](t, "Status")(c.ClusterAPI(l).Status(ctx, &clusterv1.StatusRequest{}))
		for _, m := range st.Members {
			if m.NodeId == "node9" || m.RaftAddr == "127.0.0.1:1" {
				t.Fatalf("a refused Join changed the membership: %+v", st.Members)
			}
		}
	})

	t.Run("node-only calls and forwarding metadata", func(t *testing.T) {
		// The admin is not a node: it cannot ask for a read index.
		admin := clusterv1.NewClusterServiceClient(c.DialWith(l, c.ClientCreds("admin")))
		_, err := admin.ReadIndex(ctx, &clusterv1.ReadIndexRequest{})
		wantErr(t, "admin ReadIndex", err, codes.PermissionDenied, "AccessDeniedException")
		app := clusterv1.NewClusterServiceClient(c.DialWith(l, c.ClientCreds("app")))
		_, err = app.ReadIndex(ctx, &clusterv1.ReadIndexRequest{})
		wantErr(t, "client ReadIndex", err, codes.PermissionDenied, "AccessDeniedException")
		// A client that sends forwarding metadata is refused, not served:
		// even on its own key, naming another principal is not its business.
		key := createKey(t, attacker, "attacker's own")
		fwd := metadata.AppendToOutgoingContext(ctx, "x-raftkms-principal", "owner", "x-raftkms-forwarded-by", c.ID(f))
		_, err = attacker.DescribeKey(fwd, &kmsv1.DescribeKeyRequest{KeyId: key})
		wantErr(t, "client with forwarding metadata", err, codes.PermissionDenied, "AccessDeniedException")
	})

	t.Run("invalid UTF-8", func(t *testing.T) {
		field := (&kmsv1.CreateKeyRequest{}).ProtoReflect().Descriptor().Fields().ByName("description").Number()
		body := protowire.AppendString(protowire.AppendTag(nil, field, protowire.BytesType), "caf\xc3")
		conn := c.DialWith(f, c.ClientCreds("owner"))
		err := conn.Invoke(ctx, "/raftkms.kms.v1.KeyManagementService/CreateKey", rawBytes(body), &kmsv1.CreateKeyResponse{},
			grpc.ForceCodecV2(rawCodec{}))
		wantErr(t, "invalid UTF-8 description", err, codes.InvalidArgument, "ValidationException")
	})
}

// rawCodec sends request bytes as they are (a Go client refuses to encode
// invalid UTF-8 itself).
type rawCodec struct{}

type rawBytes []byte

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if b, ok := v.(rawBytes); ok {
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	b, err := proto.Marshal(v.(proto.Message))
	return mem.BufferSlice{mem.SliceBuffer(b)}, err
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return proto.Unmarshal(data.Materialize(), v.(proto.Message))
}

func (rawCodec) Name() string { return "proto" }
