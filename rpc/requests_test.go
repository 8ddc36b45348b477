package rpc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/raftkms/raftkms/fsm"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	optionsv1 "github.com/raftkms/raftkms/proto/options/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// TestMethodTableCoversEveryMethod: every method of every raftkms service
// carries a complete classification, and the table has it.
func TestMethodTableCoversEveryMethod(t *testing.T) {
	if len(methodProblems) > 0 {
		t.Fatalf("methods without a classification:\n%s", strings.Join(methodProblems, "\n"))
	}
	services := 0
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			if !strings.HasPrefix(string(sd.FullName()), raftkmsPackage) {
				continue
			}
			services++
			for j := 0; j < sd.Methods().Len(); j++ {
				md := sd.Methods().Get(j)
				name := "/" + string(sd.FullName()) + "/" + string(md.Name())
				p, _ := proto.GetExtension(md.Options(), optionsv1.E_Method).(*optionsv1.MethodPolicy)
				if p == nil || p.Kind == optionsv1.Kind_KIND_UNSPECIFIED || p.Audience == optionsv1.Audience_AUDIENCE_UNSPECIFIED {
					t.Errorf("%s: classification %v is missing or incomplete", name, p)
				}
				m, ok := methods[name]
				if !ok {
					t.Errorf("%s is missing from the method table", name)
					continue
				}
				if m.kind != p.GetKind() || m.audience != p.GetAudience() || m.action != p.GetAction() {
					t.Errorf("%s: table %+v differs from its option %v", name, m, p)
				}
			}
		}
		return true
	})
	if services < 2 {
		t.Fatalf("found %d raftkms services; the KMS and cluster services must be registered", services)
	}
	// Key calls name their policy action; writes are the ones forwarded.
	for name, m := range methods {
		if strings.Contains(name, "KeyManagementService") && m.action == "" {
			t.Errorf("%s names no key-policy action", name)
		}
	}
	if !methods["/raftkms.kms.v1.KeyManagementService/UpdateAlias"].write() || methods["/raftkms.kms.v1.KeyManagementService/Encrypt"].write() {
		t.Error("UpdateAlias must be a write and Encrypt a read")
	}
}

// TestMethodTableRefusesUnclassified: a raftkms service method without the
// option is reported, and the interceptor refuses a method not in the table
// without running its handler.
func TestMethodTableRefusesUnclassified(t *testing.T) {
	fdp := &descriptorpb.FileDescriptorProto{
		Name:        proto.String("raftkms/test/v1/test.proto"),
		Package:     proto.String("raftkms.test.v1"),
		Syntax:      proto.String("proto3"),
		Dependency:  []string{"proto/options/v1/options.proto"},
		MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("Empty")}},
		Service: []*descriptorpb.ServiceDescriptorProto{{Name: proto.String("Forgotten"), Method: []*descriptorpb.MethodDescriptorProto{
			{Name: proto.String("NoOption"), InputType: proto.String(".raftkms.test.v1.Empty"), OutputType: proto.String(".raftkms.test.v1.Empty")},
		}}},
	}
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	files := &protoregistry.Files{}
	if err := files.RegisterFile(fd); err != nil {
		t.Fatal(err)
	}
	table, problems := buildMethodTable(files)
	if len(problems) != 1 || !strings.Contains(problems[0], "/raftkms.test.v1.Forgotten/NoOption") || len(table) != 0 {
		t.Fatalf("an unclassified method gave table %v, problems %v", table, problems)
	}

	h := newHarness(t)
	ran := false
	_, err = h.srv.UnaryInterceptor()(context.Background(), &kmsv1.ListKeysRequest{},
		&grpc.UnaryServerInfo{FullMethod: "/raftkms.test.v1.Forgotten/NoOption"},
		func(context.Context, any) (any, error) { ran = true; return nil, nil })
	wantCode(t, "unclassified method", err, codes.Internal, "KMSInternalException")
	if ran {
		t.Error("the handler of an unclassified method ran")
	}
	// The health service is classified and reachable.
	if _, err := grpc_health_v1.NewHealthClient(h.conn("owner")).Check(testCtx(t), &grpc_health_v1.HealthCheckRequest{}); codeOf(err) == codes.Internal {
		t.Errorf("health check refused: %v", err)
	}
}

func withID(ctx context.Context, id string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, MDRequestID, id)
}

// TestRequestIDs: a client's request ID is checked, never replaced, and
// every write's envelope carries the fingerprint of its request (issue 12,
// item 4).
func TestRequestIDs(t *testing.T) {
	h := newHarness(t)
	ctx := testCtx(t)
	key := h.createKey("owner", nil)
	kms := h.kms("owner")
	enable := &kmsv1.EnableKeyRequest{KeyId: key}

	for _, bad := range []string{strings.Repeat("a", maxRequestID+1), "a b", "id;drop", `{"json":1}`} {
		n := len(h.node.proposed())
		_, err := kms.EnableKey(withID(ctx, bad), enable)
		wantCode(t, "request ID "+bad, err, codes.InvalidArgument, "ValidationException")
		if len(h.node.proposed()) != n {
			t.Errorf("request ID %q: a write was proposed", bad)
		}
	}
	long := strings.Repeat("x", maxRequestID-3) + "-/="
	if _, err := kms.EnableKey(withID(ctx, long), enable); err != nil {
		t.Fatalf("a %d-character request ID: %v", len(long), err)
	}
	if got := h.node.last().RequestId; got != long {
		t.Fatalf("request ID proposed as %q, want the client's own", got)
	}

	// The fingerprint: SHA-256 of the method and the deterministic request.
	const method = "/raftkms.kms.v1.KeyManagementService/EnableKey"
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(enable)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(append(append([]byte(method), 0), b...))
	if _, err := kms.EnableKey(withID(ctx, "enable-1"), enable); err != nil {
		t.Fatal(err)
	}
	direct := h.node.last()
	if !bytes.Equal(direct.RequestFingerprint, want[:]) || direct.Principal != "owner" || direct.RequestId != "enable-1" {
		t.Fatalf("envelope %v: fingerprint %x, want %x, principal owner, ID enable-1", direct, direct.RequestFingerprint, want)
	}
	// Forwarded by a follower: the same fingerprint and principal.
	if _, err := h.kms("node2").EnableKey(withID(forwarded(ctx, "node2", "owner"), "enable-2"), enable); err != nil {
		t.Fatal(err)
	}
	if fwd := h.node.last(); !bytes.Equal(fwd.RequestFingerprint, want[:]) || fwd.Principal != "owner" {
		t.Fatalf("forwarded envelope: fingerprint %x principal %q, want %x owner", fwd.RequestFingerprint, fwd.Principal, want)
	}
	// The same ID with another request has another fingerprint, and the
	// state machine refuses it rather than answer with the first result.
	_, err = kms.DisableKey(withID(ctx, "enable-1"), &kmsv1.DisableKeyRequest{KeyId: key})
	if last := h.node.last(); last.GetDisableKey() == nil || bytes.Equal(last.RequestFingerprint, want[:]) || len(last.RequestFingerprint) != sha256.Size {
		t.Fatalf("DisableKey reusing an ID proposed %v (err %v)", last, err)
	}
	wantCode(t, "DisableKey reusing EnableKey's request ID", err, codes.FailedPrecondition, "IdempotentParameterMismatchException")
	if k, _ := h.f.Key(key); k.State != fsm.KeyStateEnabled {
		t.Fatalf("the refused DisableKey left the key %s", fsm.StateName(k.State))
	}
	// A retry of the same request answers as the first did.
	if _, err := kms.EnableKey(withID(ctx, "enable-1"), enable); err != nil {
		t.Fatalf("retried EnableKey: %v", err)
	}
	// Another identity's request ID is its own: reusing the owner's
	// CreateKey ID makes a key of its own, not the owner's answer.
	first, err := kms.CreateKey(withID(ctx, "create-1"), &kmsv1.CreateKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	second, err := h.kms("other").CreateKey(withID(ctx, "create-1"), &kmsv1.CreateKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if first.KeyMetadata.KeyId == second.KeyMetadata.KeyId {
		t.Fatalf("other reusing owner's request ID got owner's key %s", first.KeyMetadata.KeyId)
	}
	if _, err := kms.ListKeys(ctx, &kmsv1.ListKeysRequest{}); err != nil {
		t.Fatal(err)
	}
}

// rawCodec sends request bytes as they are, so a test can send what a Go
// client would refuse to encode.
type rawCodec struct{}

type rawMessage struct{ b []byte }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*rawMessage); ok {
		return mem.BufferSlice{mem.SliceBuffer(r.b)}, nil
	}
	b, err := proto.Marshal(v.(proto.Message))
	return mem.BufferSlice{mem.SliceBuffer(b)}, err
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return proto.Unmarshal(data.Materialize(), v.(proto.Message))
}

func (rawCodec) Name() string { return "proto" }

// TestBadInput: AWS KMS's limits and undecodable requests are
// InvalidArgument with the exception AWS names, never Internal.
func TestBadInput(t *testing.T) {
	h := newHarness(t)
	ctx := testCtx(t)
	kms := h.kms("owner")
	key, fresh := h.createKey("owner", nil), h.createKey("owner", nil)
	tags := func(n int) []*kmsv1.Tag {
		var out []*kmsv1.Tag
		for i := range n {
			out = append(out, &kmsv1.Tag{TagKey: "k" + strings.Repeat("x", i), TagValue: "v"})
		}
		return out
	}
	bigContext := map[string]string{"a": strings.Repeat("x", 8190)}
	cases := []struct {
		name      string
		call      func() error
		code      codes.Code
		exception string
	}{
		{"51 tags", func() error {
			_, err := kms.TagResource(ctx, &kmsv1.TagResourceRequest{KeyId: key, Tags: tags(51)})
			return err
		},
			codes.InvalidArgument, "TagException"},
		{"50 tags", func() error {
			_, err := kms.TagResource(ctx, &kmsv1.TagResourceRequest{KeyId: key, Tags: tags(50)})
			return err
		},
			codes.OK, ""},
		{"51 tags at creation", func() error { _, err := kms.CreateKey(ctx, &kmsv1.CreateKeyRequest{Tags: tags(51)}); return err },
			codes.InvalidArgument, "TagException"},
		{"duplicate tag keys", func() error {
			_, err := kms.TagResource(ctx, &kmsv1.TagResourceRequest{KeyId: key, Tags: []*kmsv1.Tag{{TagKey: "a"}, {TagKey: "a", TagValue: "2"}}})
			return err
		}, codes.InvalidArgument, "TagException"},
		{"aws: tag key", func() error {
			_, err := kms.CreateKey(ctx, &kmsv1.CreateKeyRequest{Tags: []*kmsv1.Tag{{TagKey: "AWS:owner", TagValue: "x"}}})
			return err
		}, codes.InvalidArgument, "TagException"},
		{"empty tag key", func() error {
			_, err := kms.TagResource(ctx, &kmsv1.TagResourceRequest{KeyId: key, Tags: []*kmsv1.Tag{{TagValue: "x"}}})
			return err
		}, codes.InvalidArgument, "ValidationException"},
		{"129-character tag key", func() error {
			_, err := kms.TagResource(ctx, &kmsv1.TagResourceRequest{KeyId: key, Tags: []*kmsv1.Tag{{TagKey: strings.Repeat("k", 129)}}})
			return err
		}, codes.InvalidArgument, "ValidationException"},
		{"128-character tag key of multibyte characters", func() error {
			_, err := kms.TagResource(ctx, &kmsv1.TagResourceRequest{KeyId: fresh, Tags: []*kmsv1.Tag{{TagKey: strings.Repeat("é", 128)}}})
			return err
		}, codes.OK, ""},
		{"257-character tag value", func() error {
			_, err := kms.TagResource(ctx, &kmsv1.TagResourceRequest{KeyId: key, Tags: []*kmsv1.Tag{{TagKey: "k", TagValue: strings.Repeat("v", 257)}}})
			return err
		}, codes.InvalidArgument, "ValidationException"},
		{"untag aws:", func() error {
			_, err := kms.UntagResource(ctx, &kmsv1.UntagResourceRequest{KeyId: key, TagKeys: []string{"aws:x"}})
			return err
		}, codes.InvalidArgument, "TagException"},
		{"empty encryption context key", func() error {
			_, err := kms.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("x"), EncryptionContext: map[string]string{"": "v"}})
			return err
		}, codes.InvalidArgument, "ValidationException"},
		{"encryption context over 8 KiB", func() error {
			_, err := kms.GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: key, KeySpec: "AES_256", EncryptionContext: bigContext})
			return err
		}, codes.InvalidArgument, "ValidationException"},
		{"decrypt context over 8 KiB", func() error {
			_, err := kms.Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: []byte{1, 2, 3}, EncryptionContext: bigContext})
			return err
		}, codes.InvalidArgument, "ValidationException"},
		{"re-encrypt destination context over 8 KiB", func() error {
			_, err := kms.ReEncrypt(ctx, &kmsv1.ReEncryptRequest{CiphertextBlob: []byte{1}, DestinationKeyId: key, DestinationEncryptionContext: bigContext})
			return err
		}, codes.InvalidArgument, "ValidationException"},
		{"policy over 32 KiB", func() error {
			_, err := kms.PutKeyPolicy(ctx, &kmsv1.PutKeyPolicyRequest{KeyId: key, Policy: defaultPolicy("owner") + strings.Repeat(" ", 32*1024)})
			return err
		}, codes.InvalidArgument, "MalformedPolicyDocumentException"},
		{"policy over 32 KiB at creation", func() error {
			_, err := kms.CreateKey(ctx, &kmsv1.CreateKeyRequest{Policy: defaultPolicy("owner") + strings.Repeat(" ", 32*1024)})
			return err
		}, codes.InvalidArgument, "MalformedPolicyDocumentException"},
		{"description of 8,193 characters", func() error {
			_, err := kms.UpdateKeyDescription(ctx, &kmsv1.UpdateKeyDescriptionRequest{KeyId: key, Description: strings.Repeat("d", 8193)})
			return err
		}, codes.InvalidArgument, "ValidationException"},
		{"description of 8,192 multibyte characters", func() error {
			_, err := kms.CreateKey(ctx, &kmsv1.CreateKeyRequest{Description: strings.Repeat("ü", 8192)})
			return err
		}, codes.OK, ""},
		{"deletion window in days and seconds", func() error {
			_, err := kms.ScheduleKeyDeletion(ctx, &kmsv1.ScheduleKeyDeletionRequest{KeyId: key, PendingWindowInDays: 7, PendingWindowSeconds: 7 * 86400})
			return err
		}, codes.InvalidArgument, "ValidationException"},
		{"rotation period in days and seconds", func() error {
			_, err := kms.EnableKeyRotation(ctx, &kmsv1.EnableKeyRotationRequest{KeyId: key, RotationPeriodInDays: 90, RotationPeriodSeconds: 90 * 86400})
			return err
		}, codes.InvalidArgument, "ValidationException"},
	}
	for _, c := range cases {
		wantCode(t, c.name, c.call(), c.code, c.exception)
	}

	// Invalid UTF-8 and malformed wire data, sent as raw bytes.
	descField := (&kmsv1.CreateKeyRequest{}).ProtoReflect().Descriptor().Fields().ByName("description").Number()
	badUTF8 := protowire.AppendString(protowire.AppendTag(nil, descField, protowire.BytesType), "caf\xc3")
	ctxField := (&kmsv1.EncryptRequest{}).ProtoReflect().Descriptor().Fields().ByName("key_id").Number()
	badKeyID := protowire.AppendString(protowire.AppendTag(nil, ctxField, protowire.BytesType), "\xff\xfe")
	n := len(h.node.proposed())
	for name, call := range map[string]struct {
		method string
		body   []byte
		out    proto.Message
	}{
		"invalid UTF-8 description": {"/raftkms.kms.v1.KeyManagementService/CreateKey", badUTF8, &kmsv1.CreateKeyResponse{}},
		"invalid UTF-8 key ID":      {"/raftkms.kms.v1.KeyManagementService/Encrypt", badKeyID, &kmsv1.EncryptResponse{}},
		"truncated wire data":       {"/raftkms.kms.v1.KeyManagementService/CreateKey", badUTF8[:len(badUTF8)-2], &kmsv1.CreateKeyResponse{}},
	} {
		err := h.conn("owner").Invoke(ctx, call.method, &rawMessage{call.body}, call.out, grpc.ForceCodecV2(rawCodec{}))
		wantCode(t, name, err, codes.InvalidArgument, "ValidationException")
	}
	if len(h.node.proposed()) != n {
		t.Error("an undecodable request was proposed")
	}
}

// TestImportParametersThrottled: one identity may ask for import
// parameters only so often; others are not held up (issue 12).
func TestImportParametersThrottled(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ImportParametersPerMinute = 2 })
	ctx := testCtx(t)
	mine := h.createKey("owner", &kmsv1.CreateKeyRequest{Origin: "EXTERNAL"})
	theirs := h.createKey("other", &kmsv1.CreateKeyRequest{Origin: "EXTERNAL"})
	ask := func(who, key string) error {
		_, err := h.kms(who).GetParametersForImport(ctx, &kmsv1.GetParametersForImportRequest{KeyId: key,
			WrappingAlgorithm: "RSAES_OAEP_SHA_256", WrappingKeySpec: "RSA_2048"})
		return err
	}
	for i := range 2 {
		if err := ask("owner", mine); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	wantCode(t, "third call within a minute", ask("owner", mine), codes.ResourceExhausted, "ThrottlingException")
	// Forwarded by a node, the call counts against the same principal.
	_, err := h.kms("node2").GetParametersForImport(forwarded(ctx, "node2", "owner"), &kmsv1.GetParametersForImportRequest{KeyId: mine,
		WrappingAlgorithm: "RSAES_OAEP_SHA_256", WrappingKeySpec: "RSA_2048"})
	wantCode(t, "forwarded call", err, codes.ResourceExhausted, "ThrottlingException")
	if err := ask("other", theirs); err != nil {
		t.Fatalf("another identity is throttled too: %v", err)
	}
	// Refused calls spend nothing: an unauthorized caller is refused
	// before the throttle.
	wantCode(t, "other on owner's key", ask("other", mine), codes.PermissionDenied, "AccessDeniedException")
	h.clock.Advance(30 * time.Second)
	if err := ask("owner", mine); err != nil {
		t.Fatalf("after 30 s: %v", err)
	}
}

func TestThrottleStaysBounded(t *testing.T) {
	now := time.Unix(0, 0)
	th := newThrottle(1, func() time.Time { return now })
	for i := range maxThrottled {
		if err := th.allow(strings.Repeat("x", i%7)+string(rune('a'+i%26))+time.Duration(i).String(), "x"); err != nil {
			t.Fatal(err)
		}
	}
	if err := th.allow("newcomer", "x"); err == nil {
		t.Fatal("a full throttle of busy identities admitted one more")
	}
	now = now.Add(time.Minute) // every bucket full again
	if err := th.allow("newcomer", "x"); err != nil {
		t.Fatalf("idle identities were not forgotten: %v", err)
	}
	if len(th.buckets) > maxThrottled {
		t.Fatalf("%d buckets", len(th.buckets))
	}
}

func TestSameTokenConstantTime(t *testing.T) {
	tok := []byte{0xde, 0xad, 0xbe, 0xef}
	if !sameToken(tok, "deadbeef") || sameToken(tok, "deadbeee") || sameToken(tok[:3], "deadbeef") || sameToken(tok, "zz") {
		t.Fatal("sameToken compares wrongly")
	}
}
