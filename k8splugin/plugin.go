// Package k8splugin is a Kubernetes KMS v2 plugin backed by a raftkms
// cluster: kube-apiserver asks it, over a unix socket, to wrap and unwrap the
// data encryption keys (DEKs) that encrypt Secrets (and other resources) at
// rest, and the plugin has one raftkms key do it.
//
// It serves the API of k8s.io/kms/apis/v2 through k8s.io/kms/pkg/service:
//
//   - Status answers with a linearizable DescribeKey of the configured key,
//     so it is "ok" only while the cluster answers and the key is Enabled. Its
//     key_id is the key ARN and current version (KeyID): it changes exactly
//     when the key rotates, which tells the apiserver to wrap new DEKs.
//   - Encrypt wraps a DEK with the key's current version and returns the
//     key_id of the version the ciphertext names in its header (not of an
//     earlier Describe, which a rotation may have overtaken).
//   - Decrypt unwraps a DEK made under any version of the key, or of a key an
//     alias named before it moved, as long as that key is not deleted.
//
// What the encryption context binds, and why not the apiserver's uid, is in
// the comment on contextV1.
package k8splugin

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/raftkms/raftkms/client"
	"github.com/raftkms/raftkms/keycrypto"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/kms/pkg/service"
)

// API constants of KMS v2.
const (
	// APIVersion is the plugin API version Status reports.
	APIVersion = "v2"
	// HealthzOK is the only Status healthz value the apiserver accepts.
	HealthzOK = "ok"
	// maxCiphertextLen is the API's bound on a wrapped DEK: less than 1 kB.
	maxCiphertextLen = 1024
)

// AnnotationScheme is the annotation every wrapped DEK carries: the
// plugin's wrapping scheme, which says what encryption context the DEK was
// bound to. The apiserver stores annotations beside the wrapped DEK and hands
// them back to Decrypt, so a later plugin can change the scheme and still
// unwrap the DEKs of this one. Its key is a DNS name, as the API requires.
const AnnotationScheme = "scheme.kms.raftkms.io"

// schemeV1 is the only wrapping scheme so far.
const schemeV1 = "1"

// contextV1 is the encryption context of scheme 1. It binds a wrapped DEK to
// its use, so a DEK of the apiserver cannot be unwrapped by a plain Decrypt
// that does not name the context, and a ciphertext an application made with
// the same key does not pass for a DEK.
//
// It binds nothing per request, because the API offers nothing stable: the
// apiserver sends Encrypt and Decrypt a uid it makes afresh for each call (a
// correlation ID for logs), so the uid of the Decrypt of a DEK never equals
// the uid of its Encrypt. And a DEK is not per object: in KMS v2 one DEK
// (seed) encrypts many objects, and the apiserver itself binds each object's
// ciphertext to its storage path with the DEK (as AES-GCM additional data),
// which is what stops an object's ciphertext moving to another object. The
// key_id the apiserver stores with the DEK is checked against the
// ciphertext's header instead (Decrypt), so a tampered key_id is refused.
var contextV1 = map[string]string{"raftkms:purpose": "kubernetes-kms-v2"}

// Config configures a Plugin.
type Config struct {
	// KMS is the client of the raftkms cluster, normally
	// client.Client.KMS(): its retries, failover between endpoints and leader
	// hints serve every call. The plugin does not close it.
	KMS kmsv1.KeyManagementServiceClient
	// KeyID names the key that wraps DEKs: a key ID, key ARN, alias/NAME or
	// alias ARN. An alias is resolved on every call, so moving it moves new
	// DEKs to its new target (and changes the key_id).
	KeyID string
	// Logger receives one line per failed call (never a DEK). Default: none.
	Logger hclog.Logger
}

// Plugin is the KMS v2 service of one raftkms key. It implements
// k8s.io/kms/pkg/service.Service; Server puts it on a unix socket.
type Plugin struct {
	kms   kmsv1.KeyManagementServiceClient
	keyID string
	log   hclog.Logger
}

var _ service.Service = (*Plugin)(nil)

// New validates cfg and makes a Plugin. It makes no call to the cluster:
// the plugin starts (and reports unhealthy) while the cluster is down.
func New(cfg Config) (*Plugin, error) {
	if cfg.KMS == nil {
		return nil, errors.New("k8splugin: a cluster client (Config.KMS) is required")
	}
	if strings.TrimSpace(cfg.KeyID) == "" {
		return nil, errors.New("k8splugin: a key (Config.KeyID: key ID, ARN or alias/NAME) is required")
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Plugin{kms: cfg.KMS, keyID: strings.TrimSpace(cfg.KeyID), log: log}, nil
}

// Status reports the plugin healthy when the cluster answers a linearizable
// DescribeKey and the key is Enabled, with the key_id of its current
// version. A key in another state (disabled, pending deletion, awaiting
// imported material) gets a healthz message saying so; a cluster that does
// not answer, or a key it does not know, is an error with the cluster's
// code. Either fails the apiserver's KMS health check.
func (p *Plugin) Status(ctx context.Context) (*service.StatusResponse, error) {
	resp, err := p.kms.DescribeKey(ctx, &kmsv1.DescribeKeyRequest{KeyId: p.keyID})
	if err != nil {
		return nil, p.failed("Status", "", "DescribeKey", err)
	}
	md := resp.GetKeyMetadata()
	healthz := HealthzOK
	if md.GetKeyState() != "Enabled" {
		healthz = fmt.Sprintf("raftkms key %s is %s: it cannot wrap or unwrap DEKs", md.GetArn(), md.GetKeyState())
		p.log.Warn("key is not usable", "key", md.GetArn(), "state", md.GetKeyState())
	}
	id, err := KeyID(md.GetArn(), md.GetCurrentKeyVersion())
	switch {
	case err == nil:
	case healthz != HealthzOK && md.GetArn() != "":
		// A key awaiting its first imported material has no version yet;
		// healthz already says why it is unusable.
		id = md.GetArn()
	default:
		return nil, p.failed("Status", "", "DescribeKey", status.Error(codes.Internal, "KMSInternalException: "+err.Error()))
	}
	return &service.StatusResponse{Version: APIVersion, Healthz: healthz, KeyID: id}, nil
}

// Encrypt wraps a DEK with the key's current version. The key_id it returns
// names the version in the ciphertext's header, so a rotation between this
// call and an earlier Status cannot make the two disagree.
func (p *Plugin) Encrypt(ctx context.Context, uid string, plaintext []byte) (*service.EncryptResponse, error) {
	if len(plaintext) == 0 {
		return nil, status.Error(codes.InvalidArgument, "ValidationException: the DEK to encrypt is empty")
	}
	resp, err := p.kms.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: p.keyID, Plaintext: plaintext, EncryptionContext: contextV1})
	if err != nil {
		return nil, p.failed("Encrypt", uid, "Encrypt", err)
	}
	blob := resp.GetCiphertextBlob()
	h, _, err := keycrypto.ParseCiphertext(blob)
	if err != nil || !strings.HasSuffix(resp.GetKeyId(), "key/"+h.KeyID) {
		err = status.Errorf(codes.Internal, "KMSInternalException: the cluster answered key %s with a ciphertext it does not name (%v)", resp.GetKeyId(), err)
		return nil, p.failed("Encrypt", uid, "Encrypt", err)
	}
	if len(blob) >= maxCiphertextLen {
		err = status.Errorf(codes.InvalidArgument, "ValidationException: a DEK of %d bytes wraps to %d bytes; KMS v2 allows less than 1 kB", len(plaintext), len(blob))
		return nil, p.failed("Encrypt", uid, "Encrypt", err)
	}
	id, err := KeyID(resp.GetKeyId(), h.Version)
	if err != nil {
		return nil, p.failed("Encrypt", uid, "Encrypt", status.Error(codes.Internal, "KMSInternalException: "+err.Error()))
	}
	return &service.EncryptResponse{
		Ciphertext:  blob,
		KeyID:       id,
		Annotations: map[string][]byte{AnnotationScheme: []byte(schemeV1)},
	}, nil
}

// Decrypt unwraps a DEK. The key_id the apiserver stored with it must name
// the key and version of the ciphertext's header, and the annotations must
// name a scheme this plugin knows; the cluster then checks the ciphertext
// against that key and the scheme's encryption context.
func (p *Plugin) Decrypt(ctx context.Context, uid string, req *service.DecryptRequest) ([]byte, error) {
	if req == nil || len(req.Ciphertext) == 0 {
		return nil, status.Error(codes.InvalidArgument, "ValidationException: the wrapped DEK is empty")
	}
	ec, err := contextFor(req.Annotations)
	if err != nil {
		return nil, p.failed("Decrypt", uid, "Decrypt", err)
	}
	h, _, err := keycrypto.ParseCiphertext(req.Ciphertext)
	if err != nil {
		return nil, p.failed("Decrypt", uid, "Decrypt", status.Error(codes.InvalidArgument, "InvalidCiphertextException: the wrapped DEK is not a raftkms ciphertext"))
	}
	key, version, err := ParseKeyID(req.KeyID)
	if err != nil {
		return nil, p.failed("Decrypt", uid, "Decrypt", status.Error(codes.InvalidArgument, "ValidationException: "+err.Error()))
	}
	if key != h.KeyID || version != h.Version {
		err = status.Errorf(codes.InvalidArgument, "InvalidCiphertextException: key_id %s does not match the wrapped DEK (key %s version %d)", req.KeyID, h.KeyID, h.Version)
		return nil, p.failed("Decrypt", uid, "Decrypt", err)
	}
	resp, err := p.kms.Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: req.Ciphertext, EncryptionContext: ec, KeyId: h.KeyID})
	if err != nil {
		return nil, p.failed("Decrypt", uid, "Decrypt", err)
	}
	return resp.GetPlaintext(), nil
}

// contextFor is the encryption context of the scheme the annotations name.
func contextFor(ann map[string][]byte) (map[string]string, error) {
	scheme, ok := ann[AnnotationScheme]
	switch {
	case !ok:
		return nil, status.Errorf(codes.InvalidArgument, "ValidationException: the wrapped DEK has no %s annotation: it was not wrapped by the raftkms plugin", AnnotationScheme)
	case string(scheme) == schemeV1:
		return contextV1, nil
	}
	return nil, status.Errorf(codes.InvalidArgument, "ValidationException: the wrapped DEK names scheme %q in %s; this plugin knows scheme %s", truncate(string(scheme), 32), AnnotationScheme, schemeV1)
}

// failed logs a failed call and returns its error with the cluster's gRPC
// code and AWS exception name first, then what the plugin was doing: the
// apiserver logs the message and puts Status errors in its healthz output.
func (p *Plugin) failed(op, uid, call string, err error) error {
	code := status.Code(err)
	if _, ok := status.FromError(err); !ok {
		code = codes.Unavailable
	}
	name, msg := client.ExceptionName(err), client.ExceptionMessage(err)
	p.log.Warn("KMS v2 call failed", "op", op, "uid", uid, "key", p.keyID, "code", code.String(), "error", name+": "+msg)
	return status.Errorf(code, "%s: raftkms %s with key %s: %s", name, call, p.keyID, msg)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
