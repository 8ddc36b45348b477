package rpc

import (
	"context"

	"github.com/raftkms/raftkms/pki"
	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// invokedKey marks a context made by Invoke; its value is the principal the
// calling front authenticated. The type is unexported, so only Invoke can
// set it: nothing that arrives over gRPC carries it.
type invokedKey struct{}

// invokedPrincipal is the principal Invoke was given, if ctx came from Invoke.
func invokedPrincipal(ctx context.Context) (string, bool) {
	p, ok := ctx.Value(invokedKey{}).(string)
	return p, ok
}

// invokeMethods maps full method names ("/raftkms.kms.v1.KeyManagementService/Encrypt")
// to their generated handlers and the service they belong to.
var invokeMethods = func() map[string]invokeMethod {
	t := map[string]invokeMethod{}
	for _, desc := range []*grpc.ServiceDesc{&kmsv1.KeyManagementService_ServiceDesc, &clusterv1.ClusterService_ServiceDesc} {
		for _, m := range desc.Methods {
			t["/"+desc.ServiceName+"/"+m.MethodName] = invokeMethod{service: desc.ServiceName, handler: m.Handler}
		}
	}
	return t
}()

type invokeMethod struct {
	service string
	handler grpc.MethodHandler
}

// impl is the service implementation the generated handler calls.
func (s *Server) impl(service string) any {
	if service == clusterv1.ClusterService_ServiceDesc.ServiceName {
		return clusterService{Server: s}
	}
	return kmsService{Server: s}
}

// Invoke runs one call of the gRPC API in-process, on behalf of principal,
// through exactly the path a gRPC call takes: the generated handler and this
// server's unary interceptor (request ID, method table, authorization,
// leader forwarding, read index, audit, error statuses). Other fronts (the
// AWS-protocol listener) authenticate their callers themselves and call
// Invoke, so every operation has one implementation. Errors are gRPC
// statuses whose message starts with the AWS exception name.
func (s *Server) Invoke(ctx context.Context, principal, fullMethod string, req proto.Message) (proto.Message, error) {
	m, ok := invokeMethods[fullMethod]
	if !ok {
		return nil, toStatus(&apiError{code: codes.Unimplemented, name: "UnsupportedOperationException",
			msg: "unknown method " + fullMethod})
	}
	if principal == "" {
		return nil, toStatus(accessDenied("no principal"))
	}
	ctx = context.WithValue(ctx, invokedKey{}, principal)
	dec := func(in any) error {
		proto.Merge(in.(proto.Message), req)
		return nil
	}
	resp, err := m.handler(s.impl(m.service), ctx, dec, s.UnaryInterceptor())
	if err != nil {
		return nil, err
	}
	out, ok := resp.(proto.Message)
	if !ok {
		return nil, toStatus(internalErr("%s answered with no message", fullMethod))
	}
	return out, nil
}

// invokedCaller is the caller of an in-process call: the principal the front
// authenticated, which is never a node (nodes speak only over mutual TLS).
func (s *Server) invokedCaller(principal string) (caller, error) {
	p := s.trust.Classify(principal)
	if p.Role == pki.RoleNode || p.Role == pki.RoleNone {
		return caller{}, accessDenied("%s may not call through this front", principal)
	}
	return caller{identity: p.Identity, role: p.Role}, nil
}
