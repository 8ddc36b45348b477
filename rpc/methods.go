package rpc

import (
	"fmt"
	"strings"

	optionsv1 "github.com/raftkms/raftkms/proto/options/v1"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	// The services whose methods the table classifies; imported here so
	// their descriptors are registered whatever else imports rpc.
	_ "github.com/raftkms/raftkms/proto/cluster/v1"
	_ "github.com/raftkms/raftkms/proto/kms/v1"
)

// method is one RPC as the method table classifies it: what it does to the
// replicated state, who may call it, and which key-policy action it needs.
// Forwarding (is it a write?), authorization (which audience) and audit
// (which action) all read it; nothing else classifies RPCs.
type method struct {
	name     string // full gRPC name, /package.Service/Method
	kind     optionsv1.Kind
	audience optionsv1.Audience
	action   string // key-policy action; "" for calls about no single key
	output   protoreflect.MessageType
}

func (m *method) write() bool { return m.kind == optionsv1.Kind_KIND_WRITE }

// raftkmsPackage prefixes the proto package of every raftkms service.
const raftkmsPackage = "raftkms."

// methods is the method table, built at start-up from the
// (raftkms.options.v1.method) option of every method of every registered
// raftkms service. A method without a complete option is missing from it,
// and the interceptor refuses such a method (Internal) rather than guess;
// TestMethodTableCoversEveryMethod fails first.
var methods, methodProblems = buildMethodTable(protoregistry.GlobalFiles)

// foreignServices are the services of others that a raftkms node also
// serves, classified here because their protos carry no raftkms options.
var foreignServices = map[protoreflect.FullName]*optionsv1.MethodPolicy{
	// kmsd health and orchestrators' probes: the node's own serving state.
	protoreflect.FullName(grpc_health_v1.Health_ServiceDesc.ServiceName): {
		Kind: optionsv1.Kind_KIND_LOCAL, Audience: optionsv1.Audience_AUDIENCE_CLIENT},
}

// buildMethodTable classifies every method of the raftkms services in files
// (and of the foreign services above), and lists what it could not classify.
func buildMethodTable(files *protoregistry.Files) (map[string]*method, []string) {
	table := map[string]*method{}
	var problems []string
	files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			foreign, isForeign := foreignServices[sd.FullName()]
			if !isForeign && !strings.HasPrefix(string(sd.FullName()), raftkmsPackage) {
				continue
			}
			for j := 0; j < sd.Methods().Len(); j++ {
				md := sd.Methods().Get(j)
				policy := foreign
				if !isForeign {
					policy, _ = proto.GetExtension(md.Options(), optionsv1.E_Method).(*optionsv1.MethodPolicy)
				}
				m, err := classify(md, policy)
				if err != nil {
					problems = append(problems, err.Error())
					continue
				}
				table[m.name] = m
			}
		}
		return true
	})
	return table, problems
}

func classify(md protoreflect.MethodDescriptor, p *optionsv1.MethodPolicy) (*method, error) {
	name := "/" + string(md.Parent().FullName()) + "/" + string(md.Name())
	switch {
	case p == nil:
		return nil, fmt.Errorf("%s has no (raftkms.options.v1.method) option", name)
	case p.GetKind() == optionsv1.Kind_KIND_UNSPECIFIED || optionsv1.Kind_name[int32(p.GetKind())] == "":
		return nil, fmt.Errorf("%s has no kind", name)
	case p.GetAudience() == optionsv1.Audience_AUDIENCE_UNSPECIFIED || optionsv1.Audience_name[int32(p.GetAudience())] == "":
		return nil, fmt.Errorf("%s has no audience", name)
	case p.GetAction() != "" && !strings.HasPrefix(p.GetAction(), "kms:"):
		return nil, fmt.Errorf("%s has action %q, not kms:...", name, p.GetAction())
	case p.GetAudience() == optionsv1.Audience_AUDIENCE_SELF_NODE_OR_ADMIN && md.Input().Fields().ByName(nodeIDField) == nil:
		return nil, fmt.Errorf("%s is for the node itself, but its request has no %s field", name, nodeIDField)
	}
	out, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return nil, fmt.Errorf("%s: response type %s is not registered", name, md.Output().FullName())
	}
	return &method{name: name, kind: p.GetKind(), audience: p.GetAudience(), action: p.GetAction(), output: out}, nil
}

// nodeIDField names the node a call about one node is about
// (AUDIENCE_SELF_NODE_OR_ADMIN).
const nodeIDField protoreflect.Name = "node_id"

// lookupMethod finds a method in the table; a method missing from it is a
// build without its classification, refused loudly.
func lookupMethod(fullMethod string) (*method, error) {
	if m, ok := methods[fullMethod]; ok {
		return m, nil
	}
	return nil, internalErr("method %s has no classification in the method table; refusing it", fullMethod)
}
