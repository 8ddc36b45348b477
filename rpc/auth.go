package rpc

import (
	"context"
	"fmt"

	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/pki"
	optionsv1 "github.com/raftkms/raftkms/proto/options/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Auth configures authentication and authorization. With Enabled false (dev
// mode, loopback only) every caller is "anonymous" and everything is allowed.
type Auth struct {
	// Enabled turns identities and policies on; the gRPC server must then
	// require client certificates (mutual TLS).
	Enabled bool
	// Admins may make cluster calls and may always read and replace a key's
	// policy (to recover a key whose policy locks everyone out).
	Admins []string
	// KeyCreators may create keys; empty means every authenticated identity.
	KeyCreators []string
}

// mdPrincipal carries the client's identity on a call a node forwards to
// the leader; it is believed only from a peer whose certificate is a node's.
const mdPrincipal = "x-raftkms-principal"

// caller is who made a call, as pki.Trust classified it.
type caller struct {
	identity string   // the client's identity (for a forwarded call, the one the node named)
	role     pki.Role // what that identity is allowed to be
	nodeID   string   // for a node identity, the node it speaks for
	via      string   // the node identity that forwarded the call, or ""
}

func withCaller(ctx context.Context, c caller) context.Context {
	return withCall(ctx, func(ci *callInfo) { ci.caller = c })
}

func callerOf(ctx context.Context) caller {
	if ci := callOf(ctx); ci != nil {
		return ci.caller
	}
	return caller{}
}

// identify names the caller from its verified client certificate, through
// pki.Trust (the one place that decides what a certificate is). A node
// forwarding a call names the client in metadata; that name is believed only
// from a node certificate, and only from the node the call says forwarded it.
func (s *Server) identify(ctx context.Context, in incoming) (caller, error) {
	if p, ok := invokedPrincipal(ctx); ok {
		return s.invokedCaller(p)
	}
	if !s.cfg.Auth.Enabled {
		return caller{identity: principalAnon, role: pki.RoleClient}, nil
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return caller{}, accessDenied("no peer information")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return caller{}, accessDenied("a client certificate is required")
	}
	pc := s.trust.ClassifyConn(info.State)
	if pc.Role == pki.RoleNone {
		return caller{}, accessDenied("a verified client certificate with a valid identity is required")
	}
	fwd, by := in.principal, in.forwardedBy
	if len(fwd) == 0 && len(by) == 0 {
		return caller{identity: pc.Identity, role: pc.Role, nodeID: pc.NodeID}, nil
	}
	if pc.Role != pki.RoleNode {
		return caller{identity: pc.Identity, role: pc.Role}, accessDenied("%s is not a node and may not forward calls", pc.Identity)
	}
	if len(fwd) != 1 || len(by) != 1 || by[0] != pc.NodeID {
		return caller{identity: pc.Identity, role: pc.Role, nodeID: pc.NodeID},
			accessDenied("a forwarded call names one principal and the node that forwards it (%s)", pc.NodeID)
	}
	fc := s.trust.Classify(fwd[0])
	if fc.Role == pki.RoleNone {
		return caller{identity: pc.Identity, role: pc.Role, nodeID: pc.NodeID}, accessDenied("the forwarded principal is not a valid identity")
	}
	return caller{identity: fc.Identity, role: fc.Role, nodeID: fc.NodeID, via: pc.Identity}, nil
}

func accessDenied(format string, args ...any) error {
	return &apiError{code: codes.PermissionDenied, name: "AccessDeniedException", msg: fmt.Sprintf(format, args...)}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// authorizeMethod checks the method table's audience of a call, and the
// calls that concern no single key.
func (s *Server) authorizeMethod(c caller, m *method, req any) error {
	if !s.cfg.Auth.Enabled {
		return nil
	}
	switch m.audience {
	case optionsv1.Audience_AUDIENCE_CLIENT:
		if m.action == "kms:CreateKey" && len(s.cfg.Auth.KeyCreators) > 0 && !contains(s.cfg.Auth.KeyCreators, c.identity) {
			return accessDenied("%s may not create keys", c.identity)
		}
		return nil
	case optionsv1.Audience_AUDIENCE_ADMIN:
		if c.role == pki.RoleAdmin {
			return nil
		}
	case optionsv1.Audience_AUDIENCE_NODE:
		// Calls nodes make to each other are never forwarded on anyone's
		// behalf: the peer itself must be a node.
		if c.role == pki.RoleNode && c.via == "" {
			return nil
		}
	case optionsv1.Audience_AUDIENCE_SELF_NODE_OR_ADMIN:
		if c.role == pki.RoleAdmin {
			return nil
		}
		if c.role == pki.RoleNode && c.nodeID != "" && c.nodeID == requestNodeID(req) {
			return nil
		}
		if c.role == pki.RoleNode {
			return accessDenied("%s may not call %s for node %q; a node speaks only for itself", c.identity, m.name, requestNodeID(req))
		}
	default:
		return internalErr("method %s has an unknown audience", m.name)
	}
	return accessDenied("%s may not call %s", c.identity, m.name)
}

// requestNodeID is the node a request names (its node_id field).
func requestNodeID(req any) string {
	msg, ok := req.(proto.Message)
	if !ok {
		return ""
	}
	pr := msg.ProtoReflect()
	fd := pr.Descriptor().Fields().ByName(nodeIDField)
	if fd == nil || fd.Kind() != protoreflect.StringKind {
		return ""
	}
	return pr.Get(fd).String()
}

// adminActions are what admins may always do on any key, for recovery.
var adminActions = map[string]bool{"kms:PutKeyPolicy": true, "kms:GetKeyPolicy": true, "kms:DescribeKey": true}

// authorize checks that the caller may perform action on key k: the key's
// policy (with its conditions) allows it, or one of the key's grants gives
// it; an explicit Deny in the policy wins over both. Policy and grants are
// replicated state, so every node decides alike. What does not depend on the
// request is cached per snapshot of the key (authzcache.go).
func (s *Server) authorize(ctx context.Context, k *fsm.Key, action string) error {
	if !s.cfg.Auth.Enabled {
		return nil
	}
	c := callerOf(ctx)
	id := c.identity
	if adminActions[action] && c.role == pki.RoleAdmin {
		return nil
	}
	ak := authzKey{identity: id, role: c.role, action: action}
	v, ok := s.authz.get(k, ak)
	if !ok {
		v = s.verdictFor(k, id, action)
		s.authz.putIfCurrent(s.fsm, k, ak, v)
	}
	switch v {
	case verdictAllow:
		return nil
	case verdictDenyPolicy:
		return accessDenied("%s is denied %s on key %s by the key policy", id, action, k.ID)
	case verdictDenyNone:
		return accessDenied("%s is not authorized to perform %s on key %s", id, action, k.ID)
	}
	return s.authorizeRequest(ctx, k, id, action)
}

// authorizeRequest is the full decision for one request, with its facts
// (encryption context, alias, grant operations).
func (s *Server) authorizeRequest(ctx context.Context, k *fsm.Key, id, action string) error {
	facts := factsFor(ctx, action, s.cfg.ARN.Account)
	switch s.policyDecision(k, id, action, facts) {
	case policyAllow:
		return nil
	case policyDeny:
		return accessDenied("%s is denied %s on key %s by the key policy", id, action, k.ID)
	}
	if grantAllows(k, id, action, facts.encryptionContext) {
		return nil
	}
	return accessDenied("%s is not authorized to perform %s on key %s", id, action, k.ID)
}

// keyPolicy is key k's parsed policy (or its default); nil when it has none
// or it does not parse (then only grants can allow).
func (s *Server) keyPolicy(k *fsm.Key) *keyPolicy {
	doc := k.Policy
	if doc == "" && len(k.History) > 0 {
		doc = defaultPolicy(k.History[0].Principal)
	}
	if doc == "" {
		return nil
	}
	p, err := s.policies.get(doc)
	if err != nil {
		return nil
	}
	return p
}

// policyDecision is what key k's policy (or its default) says about the
// request.
func (s *Server) policyDecision(k *fsm.Key, identity, action string, facts *condFacts) policyDecision {
	p := s.keyPolicy(k)
	if p == nil {
		return policyNone
	}
	return p.decide(identity, action, facts)
}
