package rpc

import (
	"encoding/json"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"

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
//
// With a queue (Config.AuditQueue > 0) lines are written by one goroutine,
// many per write, and a call does not wait for its line unless it is
// security-relevant: a write, or a call refused for want of authority (its
// line is written before the call returns, batched with others). The queue
// is bounded; when it is full a call waits for room (counted in
// AuditStats.Stalls): no line is ever dropped, so a sink that cannot keep up
// slows the API rather than lose its record. Lines still queued when the
// process dies are lost (at most the queue's length, of successful reads
// only); Close writes what is queued. Without a queue every line is written
// before its call returns, as one write.
type auditLog struct {
	w    io.Writer
	node string
	now  func() time.Time
	log  hclog.Logger

	mu      sync.Mutex
	queue   []auditEntry // waiting for the writer; nil without a queue
	spare   []auditEntry // the writer's batch, swapped with queue
	max     int          // queue bound
	queued  uint64       // lines ever queued
	written uint64       // lines the writer has handled (written or failed)
	room    sync.Cond    // signalled when written moves
	closed  bool
	kick    chan struct{} // wakes the writer
	done    chan struct{} // closed when the writer has exited
	wmu     sync.Mutex    // serializes writes to w
	wbuf    []byte        // the writer's encoding buffer
	buf     []byte        // encoding buffer of lines written by their callers (under mu)

	stalls    atomic.Uint64 // calls that waited for room in a full queue
	writeErrs atomic.Uint64 // writes of the sink that failed
}

// DefaultAuditQueue is a queue length for Config.AuditQueue: enough lines
// for a few milliseconds of calls at full load.
const DefaultAuditQueue = 4096

// auditEntry is one call as recorded on its path; it is encoded later.
type auditEntry struct {
	at        time.Time
	c         caller
	m         *method
	keyID     string
	requestID string
	err       error
	forwarded bool
}

// AuditStats counts what the audit log did.
type AuditStats struct {
	Lines       uint64 // lines handled so far
	Stalls      uint64 // calls that waited because the queue was full
	WriteErrors uint64 // writes to the sink that failed (their lines are lost; each is logged)
}

func newAuditLog(w io.Writer, node string, now func() time.Time, log hclog.Logger, queue int) *auditLog {
	a := &auditLog{w: w, node: node, now: now, log: log, max: queue}
	a.room.L = &a.mu
	if queue > 0 {
		a.queue = make([]auditEntry, 0, queue)
		a.spare = make([]auditEntry, 0, queue)
		a.kick = make(chan struct{}, 1)
		a.done = make(chan struct{})
		go a.run()
	}
	return a
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
	if r, ok := req.(interface{ GetKeyId() string }); ok && r.GetKeyId() != "" {
		return r.GetKeyId() // key_id, the first of keyFields
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

// record notes one call. req is read here (for its key), never kept.
func (a *auditLog) record(c caller, m *method, requestID string, req any, err error, forwarded bool) {
	e := auditEntry{at: a.now(), c: c, m: m, keyID: auditKey(req), requestID: requestID, err: err, forwarded: forwarded}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.kick == nil || a.closed {
		a.writeNow(&e)
		return
	}
	if len(a.queue) >= a.max {
		a.stalls.Add(1)
		for len(a.queue) >= a.max && !a.closed {
			a.room.Wait()
		}
		if a.closed {
			a.writeNow(&e)
			return
		}
	}
	a.queue = append(a.queue, e)
	a.queued++
	mine := a.queued
	select {
	case a.kick <- struct{}{}:
	default:
	}
	if securityRelevant(m, err) {
		for a.written < mine && !a.closed {
			a.room.Wait()
		}
	}
}

// securityRelevant are the calls whose line is written before they return:
// writes, and calls refused for want of authority.
func securityRelevant(m *method, err error) bool {
	if m.write() {
		return true
	}
	if err == nil {
		return false
	}
	code := status.Code(err)
	return code == codes.PermissionDenied || code == codes.Unauthenticated
}

// run is the writer: it takes what is queued, encodes it and writes it at
// once, until Close.
func (a *auditLog) run() {
	defer close(a.done)
	for {
		_, open := <-a.kick
		a.mu.Lock()
		batch := a.queue
		a.queue, a.spare = a.spare[:0], nil
		a.mu.Unlock()
		if len(batch) > 0 {
			buf := a.wbuf[:0]
			for i := range batch {
				buf = a.appendLine(buf, &batch[i])
				batch[i] = auditEntry{} // drop references (errors, callers)
			}
			a.wbuf = buf
			a.write(buf, len(batch))
		}
		a.mu.Lock()
		a.spare = batch[:0]
		a.written += uint64(len(batch))
		a.room.Broadcast()
		closed := a.closed && len(a.queue) == 0
		a.mu.Unlock()
		if closed || !open {
			return
		}
	}
}

// writeNow writes one line from its caller; mu is held.
func (a *auditLog) writeNow(e *auditEntry) {
	a.queued++
	a.buf = a.appendLine(a.buf[:0], e)
	a.write(a.buf, 1)
	a.written++
}

// write writes lines to the sink; a failure is counted and logged, never
// silent.
func (a *auditLog) write(b []byte, lines int) {
	a.wmu.Lock()
	_, err := a.w.Write(b)
	a.wmu.Unlock()
	if err != nil {
		if n := a.writeErrs.Add(1); n == 1 || n%1000 == 0 {
			a.log.Error("cannot write the audit log; its lines are lost", "lines", lines, "failed_writes", n, "error", err)
		}
	}
}

// flush waits until every line queued so far is written.
func (a *auditLog) flush() {
	a.mu.Lock()
	defer a.mu.Unlock()
	mine := a.queued
	for a.kick != nil && a.written < mine && !a.closed {
		a.room.Wait()
	}
}

// close writes what is queued and stops the writer; later lines are
// written by their callers.
func (a *auditLog) close() {
	a.mu.Lock()
	if a.kick == nil || a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	a.room.Broadcast()
	a.mu.Unlock()
	close(a.kick)
	<-a.done
	// Lines queued after the writer's last batch (none can be added now).
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range a.queue {
		a.buf = a.appendLine(a.buf[:0], &a.queue[i])
		a.write(a.buf, 1)
	}
	a.written += uint64(len(a.queue))
	a.queue = a.queue[:0]
	a.room.Broadcast()
}

func (a *auditLog) stats() AuditStats {
	a.mu.Lock()
	n := a.written
	a.mu.Unlock()
	return AuditStats{Lines: n, Stalls: a.stalls.Load(), WriteErrors: a.writeErrs.Load()}
}

// recordOf is the line of an entry, as AuditRecord, but for its Time
// (appendLine formats it in place).
func (a *auditLog) recordOf(e *auditEntry) AuditRecord {
	rec := AuditRecord{
		Node:      a.node,
		Identity:  e.c.identity,
		Via:       e.c.via,
		Operation: e.m.name[strings.LastIndex(e.m.name, "/")+1:],
		Action:    e.m.action,
		KeyID:     e.keyID,
		RequestID: e.requestID,
		Code:      "OK",
		Forwarded: e.forwarded,
	}
	if e.err != nil {
		st, _ := status.FromError(e.err)
		rec.Code = st.Code().String()
		if name, _, ok := strings.Cut(st.Message(), ":"); ok && strings.HasSuffix(name, "Exception") {
			rec.Exception = name
		}
	}
	return rec
}

// appendLine appends an entry's JSON line, the bytes json.Marshal of its
// AuditRecord gives, without reflection or allocation in the common case.
func (a *auditLog) appendLine(b []byte, e *auditEntry) []byte {
	rec := a.recordOf(e)
	b = append(b, `{"time":"`...)
	b = e.at.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","node":`...)
	b = appendJSONString(b, rec.Node)
	b = append(b, `,"identity":`...)
	b = appendJSONString(b, rec.Identity)
	if rec.Via != "" {
		b = append(b, `,"via":`...)
		b = appendJSONString(b, rec.Via)
	}
	b = append(b, `,"operation":`...)
	b = appendJSONString(b, rec.Operation)
	if rec.Action != "" {
		b = append(b, `,"action":`...)
		b = appendJSONString(b, rec.Action)
	}
	if rec.KeyID != "" {
		b = append(b, `,"key_id":`...)
		b = appendJSONString(b, rec.KeyID)
	}
	b = append(b, `,"request_id":`...)
	b = appendJSONString(b, rec.RequestID)
	b = append(b, `,"code":`...)
	b = appendJSONString(b, rec.Code)
	if rec.Exception != "" {
		b = append(b, `,"exception":`...)
		b = appendJSONString(b, rec.Exception)
	}
	if rec.Forwarded {
		b = append(b, `,"forwarded_to_leader":true`...)
	}
	return append(b, "}\n"...)
}

// appendJSONString appends s as encoding/json writes it: printable ASCII
// other than " \\ < > & as it is, anything else through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
