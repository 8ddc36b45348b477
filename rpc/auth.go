package rpc

import (
	"context"
	"fmt"
	"strings"

	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/pki"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
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

type callerKey struct{}

// caller is who made a call.
type caller struct {
	identity string // the client's identity
	via      string // the node that forwarded the call, or ""
}

func withCaller(ctx context.Context, c caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

func callerOf(ctx context.Context) caller {
	c, _ := ctx.Value(callerKey{}).(caller)
	return c
}

// identify names the caller from its verified client certificate; a node
// forwarding a call names the client in metadata.
func (s *Server) identify(ctx context.Context, md metadata.MD) (caller, error) {
	if p, ok := invokedPrincipal(ctx); ok {
		return s.invokedCaller(p)
	}
	if !s.cfg.Auth.Enabled {
		return caller{identity: principalAnon}, nil
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return caller{}, accessDenied("no peer information")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return caller{}, accessDenied("a client certificate is required")
	}
	id := pki.PeerIdentity(info.State)
	if id == "" {
		return caller{}, accessDenied("a verified client certificate is required")
	}
	if fwd := firstMD(md, mdPrincipal); fwd != "" && pki.IsNodeIdentity(id) {
		return caller{identity: fwd, via: id}, nil
	}
	return caller{identity: id}, nil
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

func (s *Server) isAdmin(identity string) bool { return contains(s.cfg.Auth.Admins, identity) }

// clusterMethods are ClusterService calls and who may make them: "admin"
// (admins), "node" (nodes and admins), "any" (every authenticated identity).
var clusterMethods = map[string]string{
	"Status": "any", "Join": "node", "Remove": "admin", "TransferLeadership": "admin",
	"Snapshot": "admin", "ReadIndex": "node",
}

// authorizeMethod checks the calls that concern no single key.
func (s *Server) authorizeMethod(c caller, fullMethod string) error {
	if !s.cfg.Auth.Enabled {
		return nil
	}
	if name, ok := strings.CutPrefix(fullMethod, "/raftkms.cluster.v1.ClusterService/"); ok {
		switch clusterMethods[name] {
		case "any":
			return nil
		case "node":
			if pki.IsNodeIdentity(c.identity) || s.isAdmin(c.identity) {
				return nil
			}
		default:
			if s.isAdmin(c.identity) {
				return nil
			}
		}
		return accessDenied("%s may not call %s", c.identity, name)
	}
	if fullMethod == "/raftkms.kms.v1.KeyManagementService/CreateKey" &&
		len(s.cfg.Auth.KeyCreators) > 0 && !contains(s.cfg.Auth.KeyCreators, c.identity) {
		return accessDenied("%s may not create keys", c.identity)
	}
	return nil
}

// adminActions are what admins may always do on any key, for recovery.
var adminActions = map[string]bool{"kms:PutKeyPolicy": true, "kms:GetKeyPolicy": true, "kms:DescribeKey": true}

// authorize checks that the caller may perform action on key k under the
// key's policy. The policy is the replicated one, so every node decides alike.
func (s *Server) authorize(ctx context.Context, k *fsm.Key, action string) error {
	if !s.cfg.Auth.Enabled {
		return nil
	}
	id := callerOf(ctx).identity
	if adminActions[action] && s.isAdmin(id) {
		return nil
	}
	doc := k.Policy
	if doc == "" && len(k.History) > 0 {
		doc = defaultPolicy(k.History[0].Principal)
	}
	if doc != "" {
		p, err := s.policies.get(doc)
		if err == nil && p.allows(id, action) {
			return nil
		}
	}
	return accessDenied("%s is not authorized to perform %s on key %s", id, action, k.ID)
}
