package rpc

import (
	"encoding/json"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/raftkms/raftkms/keycrypto"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// auditLog writes one JSON line per call: when, which node, who (and via
// which node), what, on which key, with which request ID, and how it ended.
// It never writes request or response bodies: no plaintext, ciphertext,
// key material or data keys.
type auditLog struct {
	w    io.Writer
	node string
	now  func() time.Time

	mu  sync.Mutex
	buf []byte
}

// AuditRecord is one line of the audit log.
type AuditRecord struct {
	Time      string `json:"time"`
	Node      string `json:"node"`
	Identity  string `json:"identity"`
	Via       string `json:"via,omitempty"`
	Operation string `json:"operation"`
	Action    string `json:"action,omitempty"`
	KeyID     string `json:"key_id,omitempty"`
	RequestID string `json:"request_id"`
	Code      string `json:"code"`
	Exception string `json:"exception,omitempty"`
	Forwarded bool   `json:"forwarded_to_leader,omitempty"`
}

// keyFields are the request fields that name the key a call is about.
var keyFields = []protoreflect.Name{"key_id", "target_key_id", "destination_key_id"}

// auditKey names the key of a request without touching secret fields: a
// key reference field, or the key ID in a ciphertext's clear header.
func auditKey(req any) string {
	switch r := req.(type) {
	case *kmsv1.DecryptRequest:
		if r.KeyId != "" {
			return r.KeyId
		}
		if h, _, err := keycrypto.ParseCiphertext(r.CiphertextBlob); err == nil {
			return h.KeyID
		}
		return ""
	case *kmsv1.ReEncryptRequest:
		if h, _, err := keycrypto.ParseCiphertext(r.CiphertextBlob); err == nil {
			return h.KeyID
		}
		return r.SourceKeyId
	}
	m, ok := req.(proto.Message)
	if !ok {
		return ""
	}
	pr := m.ProtoReflect()
	for _, name := range keyFields {
		if fd := pr.Descriptor().Fields().ByName(name); fd != nil && fd.Kind() == protoreflect.StringKind {
			if v := pr.Get(fd).String(); v != "" {
				return v
			}
		}
	}
	return ""
}

func (a *auditLog) record(c caller, m *method, requestID string, req any, err error, forwarded bool) {
	rec := AuditRecord{
		Time:      a.now().UTC().Format(time.RFC3339Nano),
		Node:      a.node,
		Identity:  c.identity,
		Via:       c.via,
		Operation: m.name[strings.LastIndex(m.name, "/")+1:],
		Action:    m.action,
		KeyID:     auditKey(req),
		RequestID: requestID,
		Code:      "OK",
		Forwarded: forwarded,
	}
	if err != nil {
		st, _ := status.FromError(err)
		rec.Code = st.Code().String()
		if name, _, ok := strings.Cut(st.Message(), ":"); ok && strings.HasSuffix(name, "Exception") {
			rec.Exception = name
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	b, jerr := json.Marshal(rec)
	if jerr != nil {
		return
	}
	a.buf = append(append(a.buf[:0], b...), '\n')
	a.w.Write(a.buf)
}
