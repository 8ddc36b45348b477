package rpc

import (
	"context"
	"fmt"
	"testing"

	"github.com/raftkms/raftkms/fsm"
	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestAliasAuthorization covers alias changes where they are authorized
// (issue 12, item 3): re-pointing needs kms:UpdateAlias on the alias's
// current key and on the new one, deleting needs kms:DeleteAlias on the
// current key, and the event names the current key that was checked.
func TestAliasAuthorization(t *testing.T) {
	type aliasCase struct {
		name       string
		caller     string // who calls: owner, other, admin
		via        string // a node forwarding the call, or ""
		del        bool   // DeleteAlias, else UpdateAlias
		alias      string // alias/app (owner's key A) or alias/evil (other's key B)
		target     string // A, A2 (owner's), B (other's), P (owner's, pending deletion), D (owner's, disabled)
		code       codes.Code
		exception  string
		wantTarget string // the alias's key afterwards ("" = gone)
	}
	denied, ok := codes.PermissionDenied, codes.OK
	cases := []aliasCase{
		{"other re-points the owner's alias to its own key (hijack)", "other", "", false, "alias/app", "B", denied, "AccessDeniedException", "A"},
		{"other deletes the owner's alias", "other", "", true, "alias/app", "", denied, "AccessDeniedException", "A"},
		{"a node forwards other's hijack", "other", "node2", false, "alias/app", "B", denied, "AccessDeniedException", "A"},
		{"owner re-points its alias to other's key", "owner", "", false, "alias/app", "B", denied, "AccessDeniedException", "A"},
		{"owner re-points other's alias to its own key", "owner", "", false, "alias/evil", "A", denied, "AccessDeniedException", "B"},
		{"owner deletes other's alias", "owner", "", true, "alias/evil", "", denied, "AccessDeniedException", "B"},
		{"admin re-points the owner's alias", "admin", "", false, "alias/app", "A2", denied, "AccessDeniedException", "A"},
		{"owner re-points between its own keys", "owner", "", false, "alias/app", "A2", ok, "", "A2"},
		{"owner re-points, forwarded by a node", "owner", "node2", false, "alias/app", "A2", ok, "", "A2"},
		{"owner re-points to its disabled key", "owner", "", false, "alias/app", "D", ok, "", "D"},
		{"owner re-points to its key pending deletion", "owner", "", false, "alias/app", "P", codes.FailedPrecondition, "KMSInvalidStateException", "A"},
		{"owner deletes its alias", "owner", "", true, "alias/app", "", ok, "", ""},
		{"other deletes its own alias", "other", "", true, "alias/evil", "", ok, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			ctx := testCtx(t)
			keys := map[string]string{
				"A": h.createKey("owner", nil), "A2": h.createKey("owner", nil), "B": h.createKey("other", nil),
				"P": h.createKey("owner", nil), "D": h.createKey("owner", nil),
			}
			if _, err := h.kms("owner").ScheduleKeyDeletion(ctx, &kmsv1.ScheduleKeyDeletionRequest{KeyId: keys["P"]}); err != nil {
				t.Fatal(err)
			}
			if _, err := h.kms("owner").DisableKey(ctx, &kmsv1.DisableKeyRequest{KeyId: keys["D"]}); err != nil {
				t.Fatal(err)
			}
			if _, err := h.kms("owner").CreateAlias(ctx, &kmsv1.CreateAliasRequest{AliasName: "alias/app", TargetKeyId: keys["A"]}); err != nil {
				t.Fatal(err)
			}
			if _, err := h.kms("other").CreateAlias(ctx, &kmsv1.CreateAliasRequest{AliasName: "alias/evil", TargetKeyId: keys["B"]}); err != nil {
				t.Fatal(err)
			}
			current := h.aliasTarget(c.alias)
			kms, cctx := h.kms(c.caller), ctx
			if c.via != "" {
				kms, cctx = h.kms(c.via), forwarded(ctx, c.via, c.caller)
			}
			var err error
			if c.del {
				_, err = kms.DeleteAlias(cctx, &kmsv1.DeleteAliasRequest{AliasName: c.alias})
			} else {
				_, err = kms.UpdateAlias(cctx, &kmsv1.UpdateAliasRequest{AliasName: c.alias, TargetKeyId: keys[c.target]})
			}
			wantCode(t, c.name, err, c.code, c.exception)
			if got, want := h.aliasTarget(c.alias), keys[c.wantTarget]; got != want {
				t.Errorf("%s now points to %q, want %q", c.alias, got, want)
			}
			if c.code != codes.OK {
				return
			}
			// The event carries the current target that was checked.
			env := h.node.last()
			expected := env.GetUpdateAlias().GetExpectedTargetKeyId()
			if c.del {
				expected = env.GetDeleteAlias().GetExpectedTargetKeyId()
			}
			if expected != current {
				t.Errorf("event's expected target is %q, want the checked current target %q", expected, current)
			}
		})
	}
}

// TestAliasChangeCannotRace: the alias moves between UpdateAlias's checks
// and its proposal (another write committed in between); the proposal names
// the target it checked, so it is refused instead of applying a change
// nobody authorized against the alias's new target.
func TestAliasChangeCannotRace(t *testing.T) {
	for _, del := range []bool{false, true} {
		h := newHarness(t)
		ctx := testCtx(t)
		a, a2, b := h.createKey("owner", nil), h.createKey("owner", nil), h.createKey("other", nil)
		if _, err := h.kms("owner").CreateAlias(ctx, &kmsv1.CreateAliasRequest{AliasName: "alias/app", TargetKeyId: a}); err != nil {
			t.Fatal(err)
		}
		// Checked against a (owner's, also a2's owner), but meanwhile the
		// alias moved to b.
		h.node.before = func(env *eventsv1.Envelope) *eventsv1.Envelope {
			h.node.before = nil
			return &eventsv1.Envelope{Principal: "other", TimeUnixNano: h.clock.Now().UnixNano(),
				Event: &eventsv1.Envelope_UpdateAlias{UpdateAlias: &eventsv1.UpdateAlias{
					AliasName: "alias/app", TargetKeyId: b, ExpectedTargetKeyId: a}}}
		}
		var err error
		if del {
			_, err = h.kms("owner").DeleteAlias(ctx, &kmsv1.DeleteAliasRequest{AliasName: "alias/app"})
		} else {
			_, err = h.kms("owner").UpdateAlias(ctx, &kmsv1.UpdateAliasRequest{AliasName: "alias/app", TargetKeyId: a2})
		}
		wantCode(t, fmt.Sprintf("raced change (delete %v)", del), err, codes.FailedPrecondition, "KMSInvalidStateException")
		if got := h.aliasTarget("alias/app"); got != b {
			t.Fatalf("delete %v: alias/app points to %q after the raced change, want %q", del, got, b)
		}
	}
}

// TestKeyActionAuthorization: every key action against the key's policy,
// by caller and key state. The default policy gives the creator everything;
// admins may only describe a key and read or replace its policy (recovery).
func TestKeyActionAuthorization(t *testing.T) {
	ops := map[string]func(ctx context.Context, kms kmsv1.KeyManagementServiceClient, key string) error{
		"kms:DescribeKey": func(ctx context.Context, kms kmsv1.KeyManagementServiceClient, key string) error {
			_, err := kms.DescribeKey(ctx, &kmsv1.DescribeKeyRequest{KeyId: key})
			return err
		},
		"kms:Encrypt": func(ctx context.Context, kms kmsv1.KeyManagementServiceClient, key string) error {
			_, err := kms.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x")})
			return err
		},
		"kms:GenerateDataKey": func(ctx context.Context, kms kmsv1.KeyManagementServiceClient, key string) error {
			_, err := kms.GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: key, KeySpec: "AES_256"})
			return err
		},
		"kms:EnableKey": func(ctx context.Context, kms kmsv1.KeyManagementServiceClient, key string) error {
			_, err := kms.EnableKey(ctx, &kmsv1.EnableKeyRequest{KeyId: key})
			return err
		},
		"kms:ScheduleKeyDeletion": func(ctx context.Context, kms kmsv1.KeyManagementServiceClient, key string) error {
			_, err := kms.ScheduleKeyDeletion(ctx, &kmsv1.ScheduleKeyDeletionRequest{KeyId: key})
			return err
		},
		"kms:TagResource": func(ctx context.Context, kms kmsv1.KeyManagementServiceClient, key string) error {
			_, err := kms.TagResource(ctx, &kmsv1.TagResourceRequest{KeyId: key, Tags: []*kmsv1.Tag{{TagKey: "team", TagValue: "a"}}})
			return err
		},
		"kms:GetKeyPolicy": func(ctx context.Context, kms kmsv1.KeyManagementServiceClient, key string) error {
			_, err := kms.GetKeyPolicy(ctx, &kmsv1.GetKeyPolicyRequest{KeyId: key})
			return err
		},
		"kms:PutKeyPolicy": func(ctx context.Context, kms kmsv1.KeyManagementServiceClient, key string) error {
			_, err := kms.PutKeyPolicy(ctx, &kmsv1.PutKeyPolicyRequest{KeyId: key, Policy: defaultPolicy("owner")})
			return err
		},
	}
	adminMay := map[string]bool{"kms:DescribeKey": true, "kms:GetKeyPolicy": true, "kms:PutKeyPolicy": true}
	crypto := map[string]bool{"kms:Encrypt": true, "kms:GenerateDataKey": true}
	h := newHarness(t)
	ctx := testCtx(t)
	for _, state := range []string{"Enabled", "Disabled", "PendingDeletion"} {
		for _, who := range []string{"owner", "other", "admin", "node2"} {
			for action, op := range ops {
				key := h.createKey("owner", nil)
				switch state {
				case "Disabled":
					if _, err := h.kms("owner").DisableKey(ctx, &kmsv1.DisableKeyRequest{KeyId: key}); err != nil {
						t.Fatal(err)
					}
				case "PendingDeletion":
					if _, err := h.kms("owner").ScheduleKeyDeletion(ctx, &kmsv1.ScheduleKeyDeletionRequest{KeyId: key}); err != nil {
						t.Fatal(err)
					}
				}
				allowed := who == "owner" || who == "admin" && adminMay[action]
				code, exception := codes.OK, ""
				switch {
				case !allowed:
					code, exception = codes.PermissionDenied, "AccessDeniedException"
				case state == "Disabled" && crypto[action]:
					code, exception = codes.FailedPrecondition, "DisabledException"
				case state == "PendingDeletion" && (crypto[action] || action == "kms:EnableKey" || action == "kms:ScheduleKeyDeletion"):
					code, exception = codes.FailedPrecondition, "KMSInvalidStateException"
				}
				wantCode(t, who+" "+action+" on an "+state+" key", op(ctx, h.kms(who), key), code, exception)
			}
		}
	}
}

// TestClusterAudiences: node-only calls, admin calls and Join (issue 12,
// items 1 and 7), directly and forwarded.
func TestClusterAudiences(t *testing.T) {
	h := newHarness(t)
	ctx := testCtx(t)
	if err := h.srv.RegisterSelf(ctx); err != nil {
		t.Fatal(err)
	}
	join := func(id string) *clusterv1.JoinRequest {
		check, checkID := h.srv.rootKeyFields() // the cluster's root key (rootkey.go)
		return &clusterv1.JoinRequest{NodeId: id, RaftAddr: "10.0.0.9:7101", GrpcAddr: "10.0.0.9:7001", RootKeyCheck: check, RootKeyId: checkID}
	}
	denied := codes.PermissionDenied
	cases := []struct {
		name   string
		caller string
		ctx    context.Context
		call   func(ctx context.Context, c clusterv1.ClusterServiceClient) error
		code   codes.Code
	}{
		{"client ReadIndex", "owner", ctx, readIndex, denied},
		{"admin ReadIndex", "admin", ctx, readIndex, denied},
		{"node ReadIndex", "node2", ctx, readIndex, codes.OK},
		{"node ReadIndex forwarded for a client", "node2", forwarded(ctx, "node2", "owner"), readIndex, denied},
		{"client forwarding ReadIndex as a node", "owner", forwarded(ctx, "node1", "spiffe://raftkms/node/node1"), readIndex, denied},
		{"client Time", "owner", ctx, timeCall, denied},
		{"admin Time", "admin", ctx, timeCall, denied},
		{"client Remove", "owner", ctx, remove, denied},
		{"node Remove", "node2", ctx, remove, denied},
		{"admin Remove", "admin", ctx, remove, codes.OK},
		{"node TransferLeadership", "node2", ctx, transfer, denied},
		{"admin TransferLeadership", "admin", ctx, transfer, codes.OK},
		{"client Snapshot", "owner", ctx, snapshot, denied},
		{"admin Snapshot", "admin", ctx, snapshot, codes.OK},
		{"client Status", "owner", ctx, statusCall, codes.OK},
		{"node Status", "node2", ctx, statusCall, codes.OK},
		{"node joins as itself", "node2", ctx, joinAs(join("node2")), codes.OK},
		{"node joins as another node", "node2", ctx, joinAs(join("node3")), denied},
		{"node re-points an existing member", "node2", ctx, joinAs(join("node1")), denied},
		{"admin joins a node", "admin", ctx, joinAs(join("node3")), codes.OK},
		{"client joins", "owner", ctx, joinAs(join("owner")), denied},
		{"node's Join forwarded for itself", "node1", forwarded(ctx, "node1", "spiffe://raftkms/node/node3"), joinAs(join("node3")), codes.OK},
		{"node's Join forwarded for another node", "node1", forwarded(ctx, "node1", "spiffe://raftkms/node/node3"), joinAs(join("node1")), denied},
		{"client forwards a Join as a node", "owner", forwarded(ctx, "node1", "spiffe://raftkms/node/node3"), joinAs(join("node3")), denied},
		{"node forwards claiming to be another node", "node2", forwarded(ctx, "node3", "admin"), joinAs(join("node3")), denied},
	}
	for _, c := range cases {
		err := c.call(c.ctx, h.cluster(c.caller))
		wantCode(t, c.name, err, c.code, map[codes.Code]string{denied: "AccessDeniedException"}[c.code])
	}
	// Nothing re-pointed node1; node2 and node3 joined with their addresses.
	if n, _ := h.f.Node("node1"); n.GRPCAddr != "mem:1" {
		t.Errorf("node1's address became %q", n.GRPCAddr)
	}
	for _, id := range []string{"node2", "node3"} {
		if n, ok := h.f.Node(id); !ok || n.GRPCAddr != "10.0.0.9:7001" {
			t.Errorf("%s is not registered after joining: %+v", id, n)
		}
	}
	// A node reaches Time (whatever its handler answers), a client never.
	if _, err := h.cluster("node2").Time(ctx, &clusterv1.TimeRequest{}); codeOf(err) == denied {
		t.Errorf("node Time refused: %v", err)
	}
}

func codeOf(err error) codes.Code { return status.Code(err) }

func readIndex(ctx context.Context, c clusterv1.ClusterServiceClient) error {
	_, err := c.ReadIndex(ctx, &clusterv1.ReadIndexRequest{})
	return err
}

func timeCall(ctx context.Context, c clusterv1.ClusterServiceClient) error {
	_, err := c.Time(ctx, &clusterv1.TimeRequest{})
	return err
}

func remove(ctx context.Context, c clusterv1.ClusterServiceClient) error {
	_, err := c.Remove(ctx, &clusterv1.RemoveRequest{NodeId: "node9"})
	return err
}

func transfer(ctx context.Context, c clusterv1.ClusterServiceClient) error {
	_, err := c.TransferLeadership(ctx, &clusterv1.TransferLeadershipRequest{TargetNodeId: "node2"})
	return err
}

func snapshot(ctx context.Context, c clusterv1.ClusterServiceClient) error {
	_, err := c.Snapshot(ctx, &clusterv1.SnapshotRequest{})
	return err
}

func statusCall(ctx context.Context, c clusterv1.ClusterServiceClient) error {
	_, err := c.Status(ctx, &clusterv1.StatusRequest{})
	return err
}

func joinAs(req *clusterv1.JoinRequest) func(ctx context.Context, c clusterv1.ClusterServiceClient) error {
	return func(ctx context.Context, c clusterv1.ClusterServiceClient) error {
		_, err := c.Join(ctx, req)
		return err
	}
}

// TestForwardedPrincipal: the principal a forwarded call names is believed
// from a node certificate only (issue 12, item 1).
func TestForwardedPrincipal(t *testing.T) {
	h := newHarness(t)
	ctx := testCtx(t)
	key := h.createKey("other", nil)
	// A client naming another principal is refused, not served as itself.
	_, err := h.kms("owner").DescribeKey(forwarded(ctx, "node1", "other"), &kmsv1.DescribeKeyRequest{KeyId: key})
	wantCode(t, "client forwarding as other", err, codes.PermissionDenied, "AccessDeniedException")
	_, err = h.kms("admin").DisableKey(forwarded(ctx, "node1", "other"), &kmsv1.DisableKeyRequest{KeyId: key})
	wantCode(t, "admin forwarding as other", err, codes.PermissionDenied, "AccessDeniedException")
	if k, _ := h.f.Key(key); k.State != fsm.KeyStateEnabled {
		t.Errorf("a refused call changed the key's state to %s", fsm.StateName(k.State))
	}
	// A node names the principal it forwards for, and the key's policy
	// judges that principal.
	_, err = h.kms("node2").DisableKey(forwarded(ctx, "node2", "owner"), &kmsv1.DisableKeyRequest{KeyId: key})
	wantCode(t, "node forwarding owner's call on other's key", err, codes.PermissionDenied, "AccessDeniedException")
	_, err = h.kms("node2").DisableKey(forwarded(ctx, "node2", "other"), &kmsv1.DisableKeyRequest{KeyId: key})
	wantCode(t, "node forwarding other's call", err, codes.OK, "")
	if env := h.node.last(); env.GetDisableKey() == nil || env.Principal != "other" {
		t.Errorf("forwarded DisableKey proposed as %q (%v), want principal other", env.Principal, env)
	}
	// A forwarded principal that names no valid identity is refused.
	_, err = h.kms("node2").DescribeKey(forwarded(ctx, "node2", "spiffe://raftkms/node/bad id"), &kmsv1.DescribeKeyRequest{KeyId: key})
	wantCode(t, "malformed forwarded principal", err, codes.PermissionDenied, "AccessDeniedException")
}
