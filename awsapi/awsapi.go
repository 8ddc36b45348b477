// Package awsapi serves the AWS KMS wire protocol (AWS JSON 1.1 over HTTP,
// authenticated by Signature Version 4) on a raftkms node, so AWS SDKs, the
// aws CLI, Vault/OpenBao's awskms seal and sops work against the cluster.
//
// It implements no operation itself: each request is checked (signature,
// access key), translated into the raftkms API's request message and run
// through the node's gRPC service layer in-process (Invoker), with the
// access key's identity as the principal. Validation, key policies, leader
// forwarding, read index and the audit log are therefore those of the gRPC
// API, and both fronts always agree.
package awsapi

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/hashicorp/go-hclog"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Invoker runs one call of the raftkms API on behalf of an authenticated
// principal, exactly as a gRPC call would run (rpc.(*Server).Invoke).
type Invoker interface {
	Invoke(ctx context.Context, principal, fullMethod string, req proto.Message) (proto.Message, error)
}

// Config configures the AWS-protocol front of one node.
type Config struct {
	Invoker     Invoker      // the node's service layer
	Credentials Credentials  // access keys
	Region      string       // the cluster's region; requests must be signed for it
	Logger      hclog.Logger // named "aws"
	// Now is the clock signing times are checked against; default time.Now.
	Now func() time.Time
	// Observe, if set, is called once per request with the operation's name
	// ("unknown" when the request names none this front serves), the AWS
	// error type answered ("" on success) and the time taken (metrics).
	Observe func(operation, errType string, took time.Duration)
}

// MaxBodyBytes bounds a request body (the largest AWS KMS inputs, key
// policies and import material, are far smaller).
const MaxBodyBytes = 1 << 20

// targetPrefix is the X-Amz-Target prefix of AWS KMS operations.
const targetPrefix = "TrentService."

// operation is one AWS KMS operation: the raftkms API method it runs and
// the type of that method's request.
type operation struct {
	name       string
	fullMethod string
	input      protoreflect.MessageType
}

// operations are every method of KeyManagementService, by name: the raftkms
// API names its methods as AWS KMS does.
var operations = func() map[string]operation {
	ops := map[string]operation{}
	sd := kmsv1.File_proto_kms_v1_kms_proto.Services().ByName("KeyManagementService")
	for i := 0; i < sd.Methods().Len(); i++ {
		md := sd.Methods().Get(i)
		mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
		if err != nil {
			panic("awsapi: no type for " + string(md.Input().FullName()))
		}
		ops[string(md.Name())] = operation{
			name:       string(md.Name()),
			fullMethod: "/" + string(sd.FullName()) + "/" + string(md.Name()),
			input:      mt,
		}
	}
	return ops
}()

// Operations lists the AWS operation names this front serves.
func Operations() []string {
	names := make([]string, 0, len(operations))
	for n := range operations {
		names = append(names, n)
	}
	return names
}

// Handler is the AWS-protocol HTTP handler of one node.
type Handler struct {
	inv     Invoker
	creds   Credentials
	region  string
	log     hclog.Logger
	now     func() time.Time
	signer  *v4.Signer
	observe func(operation, errType string, took time.Duration)
}

// New validates cfg and makes the handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Invoker == nil || cfg.Credentials == nil {
		return nil, errors.New("awsapi: an invoker and credentials are required")
	}
	if cfg.Region == "" {
		return nil, errors.New("awsapi: a region is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Handler{inv: cfg.Invoker, creds: cfg.Credentials, region: cfg.Region, log: cfg.Logger,
		now: cfg.Now, signer: newSigner(), observe: cfg.Observe}, nil
}

// newRequestID is a random UUID for x-amzn-RequestId.
func newRequestID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "00000000-0000-4000-8000-000000000000"
	}
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// ServeHTTP answers one AWS JSON 1.1 request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	op, errType := h.serve(w, r)
	if h.observe != nil {
		h.observe(op, errType, time.Since(start))
	}
}

// serve answers a request and returns its operation's name ("unknown"
// before one is recognised) and the AWS error type answered, if any.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request) (string, string) {
	w.Header().Set("x-amzn-RequestId", newRequestID())
	opName := "unknown"
	if name, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), targetPrefix); ok {
		if _, known := operations[name]; known {
			opName = name
		}
	}
	body, op, principal, aerr := h.accept(w, r)
	if aerr != nil {
		return opName, h.writeError(w, aerr)
	}
	req := op.input.New().Interface()
	if aerr := decodeRequest(body, req); aerr != nil {
		return op.name, h.writeError(w, aerr)
	}
	resp, err := h.inv.Invoke(r.Context(), principal, op.fullMethod, req)
	if err != nil {
		return op.name, h.writeError(w, fromStatus(err))
	}
	out, err := encodeResponse(resp)
	if err != nil {
		return op.name, h.writeError(w, newError(http.StatusInternalServerError, "KMSInternalException", "the answer could not be encoded"))
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(http.StatusOK)
	w.Write(out)
	return op.name, ""
}

// accept reads the request and checks its form and signature.
func (h *Handler) accept(w http.ResponseWriter, r *http.Request) ([]byte, operation, string, *Error) {
	if r.Method != http.MethodPost || (r.URL.Path != "/" && r.URL.Path != "") {
		return nil, operation{}, "", newError(http.StatusBadRequest, "UnknownOperationException",
			"requests are POST / with an X-Amz-Target header")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		return nil, operation{}, "", newError(http.StatusBadRequest, "ValidationException",
			fmt.Sprintf("the request body could not be read or is larger than %d bytes", MaxBodyBytes))
	}
	name, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), targetPrefix)
	op, known := operations[name]
	if !ok || !known {
		return nil, operation{}, "", newError(http.StatusBadRequest, "UnknownOperationException",
			"X-Amz-Target must name an operation of TrentService")
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-amz-json-1.1") && !strings.HasPrefix(ct, "application/json") {
		return nil, operation{}, "", newError(http.StatusBadRequest, "SerializationException",
			"Content-Type must be application/x-amz-json-1.1")
	}
	principal, aerr := h.verify(r, body)
	if aerr != nil {
		return nil, operation{}, "", aerr
	}
	return body, op, principal, nil
}

// writeError answers e and returns its type.
func (h *Handler) writeError(w http.ResponseWriter, e *Error) string {
	if e.Status >= 500 {
		h.log.Warn("request failed", "type", e.Type, "message", e.Message)
	}
	b, _ := encodeJSON(map[string]string{"__type": e.Type, "message": e.Message})
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("x-amzn-ErrorType", e.Type)
	w.WriteHeader(e.Status)
	w.Write(b)
	return e.Type
}
