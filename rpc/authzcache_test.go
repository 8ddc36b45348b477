package rpc

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/keycrypto"
	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

const (
	kmsSvc     = "/raftkms.kms.v1.KeyManagementService/"
	clusterSvc = "/raftkms.cluster.v1.ClusterService/"
)

// memCluster is three API servers, each with its own state machine, on one
// in-memory log: a write on nodes[0] is applied on every node before it is
// acknowledged (as a read lease guarantees), so a read on any node after an
// acknowledged write must honour it.
type memCluster struct {
	t     *testing.T
	nodes []*Server
}

// newMemCluster makes the cluster; notify wires each state machine's change
// notification to its server's KeyChanged as kmsd does (false: the cache
// must be exact without any notification).
func newMemCluster(t *testing.T, notify bool) *memCluster {
	t.Helper()
	root, err := keycrypto.NewRootKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	c := &memCluster{t: t}
	var fsms []*fsm.FSM
	for i := range 3 {
		var api atomic.Pointer[Server]
		cfg := fsm.Config{}
		if notify {
			cfg.OnChange = func(id string) {
				if s := api.Load(); s != nil {
					s.KeyChanged(id)
				}
			}
		}
		f, err := fsm.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		fsms = append(fsms, f)
		node := newMemNode(f)
		if i == 0 {
			defer func() { node.replicas = fsms[1:] }()
		}
		s, err := New(Config{NodeID: fmt.Sprintf("node%d", i+1), GRPCAddr: fmt.Sprintf("mem:%d", i+1), FSM: f, Node: node,
			Root: root, Auth: Auth{Enabled: true, Admins: []string{"admin"}}, Audit: &syncBuffer{}, AuditQueue: DefaultAuditQueue})
		if err != nil {
			t.Fatal(err)
		}
		api.Store(s)
		t.Cleanup(s.Close)
		c.nodes = append(c.nodes, s)
	}
	return c
}

// call runs one call as principal on node i.
func (c *memCluster) call(i int, principal, method string, req proto.Message) (proto.Message, error) {
	return c.nodes[i].Invoke(context.Background(), principal, method, req)
}

func (c *memCluster) must(principal, method string, req proto.Message) proto.Message {
	c.t.Helper()
	resp, err := c.call(0, principal, method, req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", principal, method, err)
	}
	return resp
}

// useOnEveryNode encrypts and decrypts as principal on every node, wanting
// code (and exception) from each; for OK it also checks that each node
// cached the verdict, so what follows tests the cache and not its absence.
func (c *memCluster) useOnEveryNode(what, principal, keyID string, code codes.Code, exception string) {
	c.t.Helper()
	blob := c.nodes[0].testBlob(c.t, keyID)
	for i := range c.nodes {
		for n := 0; n < 2; n++ { // the second call is served from the cache
			_, err := c.call(i, principal, kmsSvc+"Encrypt", &kmsv1.EncryptRequest{KeyId: keyID, Plaintext: []byte("x")})
			wantCode(c.t, fmt.Sprintf("%s: Encrypt on node%d", what, i+1), err, code, exception)
			_, err = c.call(i, principal, kmsSvc+"Decrypt", &kmsv1.DecryptRequest{CiphertextBlob: blob})
			wantCode(c.t, fmt.Sprintf("%s: Decrypt on node%d", what, i+1), err, code, exception)
		}
		if code == codes.OK {
			if _, n := c.nodes[i].authz.size(); n == 0 {
				c.t.Errorf("%s: node%d cached no verdict", what, i+1)
			}
		}
	}
}

// testBlob is a ciphertext under the key's current version, made directly
// (the key may be disabled by now).
func (s *Server) testBlob(t *testing.T, keyID string) []byte {
	t.Helper()
	k, ok := s.fsm.Key(keyID)
	if !ok {
		t.Fatalf("no key %s", keyID)
	}
	vk, err := s.versionKey(k, k.CurrentVersion())
	if err != nil {
		t.Fatal(err)
	}
	blob, err := vk.Encrypt(s.rand, []byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return blob
}

func sharedPolicy(deny bool, allowOther bool) string {
	st := []string{`{"Effect":"Allow","Principal":{"Identity":"owner"},"Action":"kms:*"}`}
	if allowOther {
		st = append(st, `{"Effect":"Allow","Principal":{"Identity":"other"},"Action":["kms:Encrypt","kms:Decrypt"]}`)
	}
	if deny {
		st = append(st, `{"Effect":"Deny","Principal":{"Identity":"other"},"Action":"kms:*"}`)
	}
	return `{"Version":"2012-10-17","Statement":[` + strings.Join(st, ",") + `]}`
}

// TestAuthzCacheHonoursChanges: once a change to a key is acknowledged, no
// node honours a verdict cached before it — a disabled key, a revoked or
// retired grant, a policy that now denies or no longer allows — with and
// without the state machine's change notifications.
func TestAuthzCacheHonoursChanges(t *testing.T) {
	denied, exc := codes.PermissionDenied, "AccessDeniedException"
	cases := []struct {
		name      string
		policy    string // the key's policy at creation ("" = default: owner only)
		grant     bool   // other gets an Encrypt+Decrypt grant first
		user      string // who uses the key
		change    func(c *memCluster, keyID, grantID, grantToken string)
		code      codes.Code
		exception string
	}{
		{"disable key", "", false, "owner", func(c *memCluster, id, _, _ string) {
			c.must("owner", kmsSvc+"DisableKey", &kmsv1.DisableKeyRequest{KeyId: id})
		}, codes.FailedPrecondition, "DisabledException"},
		{"schedule key deletion", "", false, "owner", func(c *memCluster, id, _, _ string) {
			c.must("owner", kmsSvc+"ScheduleKeyDeletion", &kmsv1.ScheduleKeyDeletionRequest{KeyId: id})
		}, codes.FailedPrecondition, "KMSInvalidStateException"},
		{"revoke grant", "", true, "other", func(c *memCluster, id, gid, _ string) {
			c.must("owner", kmsSvc+"RevokeGrant", &kmsv1.RevokeGrantRequest{KeyId: id, GrantId: gid})
		}, denied, exc},
		{"retire grant", "", true, "other", func(c *memCluster, _, _, token string) {
			c.must("owner", kmsSvc+"RetireGrant", &kmsv1.RetireGrantRequest{GrantToken: token})
		}, denied, exc},
		{"put policy denying", sharedPolicy(false, true), false, "other", func(c *memCluster, id, _, _ string) {
			c.must("owner", kmsSvc+"PutKeyPolicy", &kmsv1.PutKeyPolicyRequest{KeyId: id, PolicyName: "default", Policy: sharedPolicy(true, true)})
		}, denied, exc},
		{"put policy no longer allowing", sharedPolicy(false, true), false, "other", func(c *memCluster, id, _, _ string) {
			c.must("owner", kmsSvc+"PutKeyPolicy", &kmsv1.PutKeyPolicyRequest{KeyId: id, PolicyName: "default", Policy: sharedPolicy(false, false)})
		}, denied, exc},
		{"put policy denying a grantee", "", true, "other", func(c *memCluster, id, _, _ string) {
			c.must("owner", kmsSvc+"PutKeyPolicy", &kmsv1.PutKeyPolicyRequest{KeyId: id, PolicyName: "default", Policy: sharedPolicy(true, false)})
		}, denied, exc},
	}
	for _, notify := range []bool{true, false} {
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s/notify=%v", tc.name, notify), func(t *testing.T) {
				c := newMemCluster(t, notify)
				ck := c.must("owner", kmsSvc+"CreateKey", &kmsv1.CreateKeyRequest{Policy: tc.policy, BypassPolicyLockoutSafetyCheck: tc.policy != ""})
				keyID := ck.(*kmsv1.CreateKeyResponse).KeyMetadata.KeyId
				var grantID, token string
				if tc.grant {
					g := c.must("owner", kmsSvc+"CreateGrant", &kmsv1.CreateGrantRequest{KeyId: keyID, GranteePrincipal: "other",
						RetiringPrincipal: "owner", Operations: []string{"Encrypt", "Decrypt"}}).(*kmsv1.CreateGrantResponse)
					grantID, token = g.GrantId, g.GrantToken
				}
				c.useOnEveryNode("before", tc.user, keyID, codes.OK, "")
				tc.change(c, keyID, grantID, token)
				c.useOnEveryNode("after", tc.user, keyID, tc.code, tc.exception)
			})
		}
	}
}

// TestDeletedAccessKeyRefusedEverywhere: an access key deleted on one node
// no longer authenticates on any node.
func TestDeletedAccessKeyRefusedEverywhere(t *testing.T) {
	c := newMemCluster(t, true)
	ak := c.must("admin", clusterSvc+"CreateAccessKey", &clusterv1.CreateAccessKeyRequest{Identity: "app"}).(*clusterv1.CreateAccessKeyResponse).AccessKey
	for i, s := range c.nodes {
		if id, secret, ok, err := s.LookupAccessKey(context.Background(), ak.AccessKeyId); err != nil || !ok || id != "app" || secret != ak.SecretAccessKey {
			t.Fatalf("node%d: lookup before delete: %q %v %v", i+1, id, ok, err)
		}
	}
	c.must("admin", clusterSvc+"DeleteAccessKey", &clusterv1.DeleteAccessKeyRequest{AccessKeyId: ak.AccessKeyId})
	for i, s := range c.nodes {
		if _, _, ok, err := s.LookupAccessKey(context.Background(), ak.AccessKeyId); err != nil || ok {
			t.Errorf("node%d: a deleted access key still authenticates (ok=%v, err=%v)", i+1, ok, err)
		}
	}
}

// TestAuthzVerdictMatchesFullDecision: wherever verdictFor gives a verdict
// that does not depend on the request, it is the full decision's outcome for
// every request tried; conditional statements and constrained grants are
// left to the request.
func TestAuthzVerdictMatchesFullDecision(t *testing.T) {
	h := newHarness(t)
	policies := map[string]string{
		"default":      "",
		"allow other":  sharedPolicy(false, true),
		"deny other":   sharedPolicy(true, true),
		"anyone":       `{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:Encrypt"}]}`,
		"prefix":       `{"Statement":[{"Effect":"Allow","Principal":{"Identity":["other","x"]},"Action":"kms:Gen*"}]}`,
		"cond allow":   `{"Statement":[{"Effect":"Allow","Principal":{"Identity":"other"},"Action":"kms:Encrypt","Condition":{"StringEquals":{"kms:EncryptionContext:dept":"a"}}}]}`,
		"cond deny":    `{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*"},{"Effect":"Deny","Principal":{"Identity":"other"},"Action":"kms:Encrypt","Condition":{"StringEquals":{"kms:EncryptionContext:dept":"b"}}}]}`,
		"alias cond":   `{"Statement":[{"Effect":"Allow","Principal":{"Identity":"other"},"Action":"kms:*","Condition":{"Null":{"kms:RequestAlias":"false"}}}]}`,
		"unparseable":  `{"Statement":`,
		"deny anyone":  `{"Statement":[{"Effect":"Deny","Principal":"*","Action":"kms:Decrypt"},{"Effect":"Allow","Principal":"*","Action":"kms:*"}]}`,
		"deny no cond": `{"Statement":[{"Effect":"Allow","Principal":{"Identity":"other"},"Action":"kms:*","Condition":{"StringEquals":{"kms:EncryptionContext:dept":"a"}}},{"Effect":"Deny","Principal":{"Identity":"other"},"Action":"kms:Encrypt"}]}`,
	}
	grants := map[string][]fsm.Grant{
		"none":        nil,
		"plain":       {{ID: "g1", Grantee: "other", Operations: []string{"Decrypt", "Encrypt"}}},
		"subset":      {{ID: "g1", Grantee: "other", Operations: []string{"Encrypt"}, ECSubset: []fsm.Tag{{Key: "dept", Value: "a"}}}},
		"equals":      {{ID: "g1", Grantee: "other", Operations: []string{"Encrypt"}, ECEquals: []fsm.Tag{{Key: "dept", Value: "a"}}}},
		"other op":    {{ID: "g1", Grantee: "other", Operations: []string{"Sign"}}},
		"someone":     {{ID: "g1", Grantee: "someone", Operations: []string{"Encrypt"}}},
		"constrained": {{ID: "g1", Grantee: "other", Operations: []string{"Encrypt"}, ECSubset: []fsm.Tag{{Key: "dept", Value: "a"}}}, {ID: "g2", Grantee: "other", Operations: []string{"Decrypt"}}},
	}
	contexts := []map[string]string{nil, {"dept": "a"}, {"dept": "b"}, {"dept": "a", "x": "y"}}
	refs := []string{"KEY", "alias/app"}
	checked, depends := 0, 0
	for pn, doc := range policies {
		for gn, gs := range grants {
			k := &fsm.Key{ID: "1234abcd-12ab-34cd-56ef-1234567890ab", Policy: doc, Grants: gs,
				History: []fsm.HistoryEntry{{Principal: "owner"}}}
			for _, id := range []string{"owner", "other", "x"} {
				for _, action := range []string{"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:Sign"} {
					v := h.srv.verdictFor(k, id, action)
					if v == verdictDepends {
						depends++
						continue
					}
					for _, ec := range contexts {
						for _, ref := range refs {
							ctx := withCaller(context.Background(), caller{identity: id})
							ctx = withRequest(ctx, &kmsv1.EncryptRequest{KeyId: ref, EncryptionContext: ec})
							full := h.srv.authorizeRequest(ctx, k, id, action) == nil
							if full != (v == verdictAllow) {
								t.Errorf("policy %q, grants %q, %s %s, context %v, ref %s: verdict %d, full decision allows=%v",
									pn, gn, id, action, ec, ref, v, full)
							}
							checked++
						}
					}
				}
			}
		}
	}
	if checked == 0 || depends == 0 {
		t.Fatalf("checked %d fixed verdicts, %d left to the request", checked, depends)
	}
}

// TestAuthzCacheFactsNotCached: a verdict that depends on the request is
// decided per request, so an allowed encryption context never opens the
// way for another one.
func TestAuthzCacheFactsNotCached(t *testing.T) {
	c := newMemCluster(t, true)
	policy := `{"Statement":[{"Effect":"Allow","Principal":{"Identity":"owner"},"Action":"kms:*"},` +
		`{"Effect":"Allow","Principal":{"Identity":"other"},"Action":"kms:Encrypt","Condition":{"StringEquals":{"kms:EncryptionContext:dept":"a"}}}]}`
	keyID := c.must("owner", kmsSvc+"CreateKey", &kmsv1.CreateKeyRequest{Policy: policy}).(*kmsv1.CreateKeyResponse).KeyMetadata.KeyId
	g := c.must("owner", kmsSvc+"CreateGrant", &kmsv1.CreateGrantRequest{KeyId: keyID, GranteePrincipal: "third",
		Operations: []string{"Encrypt"}, Constraints: &kmsv1.GrantConstraints{EncryptionContextEquals: map[string]string{"app": "x"}}})
	_ = g
	for n := 0; n < 3; n++ {
		for _, tc := range []struct {
			who  string
			ec   map[string]string
			code codes.Code
		}{
			{"other", map[string]string{"dept": "a"}, codes.OK},
			{"other", map[string]string{"dept": "b"}, codes.PermissionDenied},
			{"other", nil, codes.PermissionDenied},
			{"third", map[string]string{"app": "x"}, codes.OK},
			{"third", map[string]string{"app": "x", "more": "y"}, codes.PermissionDenied},
			{"third", nil, codes.PermissionDenied},
		} {
			for i := range c.nodes {
				_, err := c.call(i, tc.who, kmsSvc+"Encrypt", &kmsv1.EncryptRequest{KeyId: keyID, Plaintext: []byte("x"), EncryptionContext: tc.ec})
				wantCode(t, fmt.Sprintf("%s %v on node%d", tc.who, tc.ec, i+1), err, tc.code, "")
			}
		}
	}
}

// TestAuthzCacheBounded: the cache holds at most authzMaxKeys keys and
// authzMaxPerKey verdicts per key, however many identities call.
func TestAuthzCacheBounded(t *testing.T) {
	h := newHarness(t)
	keyID := h.createKey("owner", nil)
	k, _ := h.f.Key(keyID)
	for i := range authzMaxPerKey + 10 {
		h.srv.authz.putIfCurrent(h.f, k, authzKey{identity: fmt.Sprintf("id%d", i), action: "kms:Encrypt"}, verdictDenyNone)
	}
	if keys, n := h.srv.authz.size(); keys != 1 || n > authzMaxPerKey {
		t.Errorf("after %d identities: %d keys, %d verdicts; want 1 key, at most %d", authzMaxPerKey+10, keys, n, authzMaxPerKey)
	}
	// Stale snapshots are never stored: a key no longer current is refused.
	old := *k
	h.srv.authz.putIfCurrent(h.f, &old, authzKey{identity: "x", action: "kms:Encrypt"}, verdictAllow)
	if _, ok := h.srv.authz.get(&old, authzKey{identity: "x", action: "kms:Encrypt"}); ok {
		t.Error("a verdict for a snapshot that is not the key's current one was cached")
	}
	var c authzCache
	for i := range authzMaxKeys + 100 {
		kk := *k
		kk.ID = fmt.Sprintf("k%d", i)
		c.put(&kk, authzKey{identity: "x", action: "kms:Encrypt"}, verdictAllow)
	}
	if keys, _ := c.size(); keys > authzMaxKeys {
		t.Errorf("%d keys cached; want at most %d", keys, authzMaxKeys)
	}
}
