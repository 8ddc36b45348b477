package fsm

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	"google.golang.org/protobuf/proto"
)

// snapshotFormat is the version of the snapshot stream layout.
const snapshotFormat = 1

// maxRecordSize bounds one snapshot record, for the writer and the reader
// alike: WriteTo refuses to write a record that Restore would refuse to read
// (ErrRecordTooLarge), so a snapshot that was written always restores.
//
// A key is the largest record. Under schema-2 rules it stays far below the
// bound: at most MaxHistory history entries of at most ~5.3 KiB (principal
// maxPrincipalBytes, request ID maxRequestIDBytes, hash and small fields),
// about 5.2 MiB; MaxTags tags and each single field (description, policy,
// import parameters) no larger than one log entry (maxEntrySize); versions of
// ~100 bytes of sealed material each, so a million versions fit.
// TestLargestKeyRecordRestores builds such a key.
const maxRecordSize = 256 << 20

// ErrRecordTooLarge is returned by Snapshot.WriteTo when one record would
// exceed the size Restore accepts.
var ErrRecordTooLarge = errors.New("snapshot record too large")

// Snapshot is a point-in-time view of the state. Taking it copies only
// pointers under the lock (keys are copy-on-write); writing it out streams
// one record at a time while Apply goes on.
type Snapshot struct {
	gen         uint64
	clock       int64
	rootKey     []byte // the cluster's root-key check value
	rootID      string
	rotateID    string // requested root-key rotation
	rotateCheck []byte
	keys        []*Key
	aliases     []Alias
	nodes       []Node
	access      []*AccessKey
	requests    []*requestEntry
}

// Snapshot captures the current state.
func (f *FSM) Snapshot() *Snapshot {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := &Snapshot{
		gen:         f.gen,
		clock:       f.clock,
		rootKey:     f.rootKeyCheck,
		rootID:      f.rootKeyID,
		rotateID:    f.rotateRootID,
		rotateCheck: f.rotateRootCheck,
		keys:        make([]*Key, len(f.order)),
		aliases:     make([]Alias, 0, len(f.aliases)),
		nodes:       make([]Node, 0, len(f.nodes)),
		requests:    make([]*requestEntry, len(f.reqQueue)-f.reqHead),
	}
	s.access = sortedAccessKeys(f.accessKeys, "")
	copy(s.keys, f.order)
	copy(s.requests, f.reqQueue[f.reqHead:])
	for _, a := range f.aliases {
		s.aliases = append(s.aliases, *a)
	}
	for _, n := range f.nodes {
		s.nodes = append(s.nodes, n)
	}
	sort.Slice(s.aliases, func(i, j int) bool { return s.aliases[i].Name < s.aliases[j].Name })
	sort.Slice(s.nodes, func(i, j int) bool { return s.nodes[i].ID < s.nodes[j].ID })
	return s
}

// recordWriter writes length-delimited records with one reused buffer.
type recordWriter struct {
	w     *bufio.Writer
	buf   []byte
	n     int64
	count uint64
	limit int // largest record accepted; 0 = any (the digest hashes every state)
}

// cachedSizeOpts marshals right after Size, reusing the sizes it cached.
var cachedSizeOpts = proto.MarshalOptions{Deterministic: true, UseCachedSize: true}

func (rw *recordWriter) write(rec *eventsv1.SnapshotRecord) error {
	var err error
	size := marshalOpts.Size(rec)
	if rw.limit > 0 && size > rw.limit {
		return fmt.Errorf("%w: record %d is %d bytes, more than the %d a restore accepts", ErrRecordTooLarge, rw.count, size, rw.limit)
	}
	rw.buf = binary.AppendUvarint(rw.buf[:0], uint64(size))
	rw.buf, err = cachedSizeOpts.MarshalAppend(rw.buf, rec)
	if err != nil {
		return err
	}
	m, err := rw.w.Write(rw.buf)
	rw.n += int64(m)
	rw.count++
	return err
}

// WriteTo streams the snapshot to w. The same state always gives the same
// bytes, so the bytes' hash is the state digest. A record larger than Restore
// accepts is ErrRecordTooLarge: the snapshot fails, not a later restore.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	return s.writeTo(w, maxRecordSize)
}

func (s *Snapshot) writeTo(w io.Writer, limit int) (int64, error) {
	rw := &recordWriter{w: bufio.NewWriterSize(w, 64<<10), limit: limit}
	write := func(rec *eventsv1.SnapshotRecord) error { return rw.write(rec) }
	err := write(&eventsv1.SnapshotRecord{Record: &eventsv1.SnapshotRecord_Header{Header: &eventsv1.SnapshotHeader{
		FormatVersion:      snapshotFormat,
		ClockUnixNano:      s.clock,
		KeyCount:           uint64(len(s.keys)),
		AliasCount:         uint64(len(s.aliases)),
		NodeCount:          uint64(len(s.nodes)),
		RequestCount:       uint64(len(s.requests)),
		AccessKeyCount:     uint64(len(s.access)),
		RootKeyCheck:       s.rootKey,
		RootKeyId:          s.rootID,
		RotateRootKeyId:    s.rotateID,
		RotateRootKeyCheck: s.rotateCheck,
	}}})
	// One record of each kind is reused for every key and request, so that
	// writing a snapshot allocates next to nothing per key.
	var kr keyRecorder
	keyRec := &eventsv1.SnapshotRecord_Key{}
	rec := &eventsv1.SnapshotRecord{Record: keyRec}
	for _, k := range s.keys {
		if err != nil {
			break
		}
		keyRec.Key = kr.record(k)
		err = write(rec)
	}
	for _, a := range s.aliases {
		if err != nil {
			break
		}
		err = write(&eventsv1.SnapshotRecord{Record: &eventsv1.SnapshotRecord_Alias{Alias: &eventsv1.AliasRecord{
			AliasName: a.Name, TargetKeyId: a.KeyID, CreatedUnixNano: a.CreatedAt, UpdatedUnixNano: a.UpdatedAt}}})
	}
	for _, n := range s.nodes {
		if err != nil {
			break
		}
		err = write(&eventsv1.SnapshotRecord{Record: &eventsv1.SnapshotRecord_Node{Node: &eventsv1.NodeRecord{
			NodeId: n.ID, GrpcAddr: n.GRPCAddr, RaftAddr: n.RaftAddr, MaxSchemaVersion: n.MaxSchema}}})
	}
	for _, a := range s.access {
		if err != nil {
			break
		}
		err = write(&eventsv1.SnapshotRecord{Record: &eventsv1.SnapshotRecord_AccessKey{AccessKey: &eventsv1.AccessKeyRecord{
			AccessKeyId: a.ID, Identity: a.Identity, SealedSecret: a.SealedSecret, CreatedUnixNano: a.CreatedAt}}})
	}
	reqResult := &eventsv1.ResultRecord{}
	reqRecord := &eventsv1.RequestRecord{}
	reqRec := &eventsv1.SnapshotRecord{Record: &eventsv1.SnapshotRecord_Request{Request: reqRecord}}
	for _, e := range s.requests {
		if err != nil {
			break
		}
		r := e.result
		reqResult.Reset()
		reqResult.Code, reqResult.Message, reqResult.KeyId = uint32(r.code), r.msg, r.keyID
		reqResult.Version, reqResult.DeletionUnixNano, reqResult.GrantId = r.version, r.deletionTime, r.grantID
		reqRecord.Reset()
		reqRecord.RequestId, reqRecord.TimeUnixNano, reqRecord.Index, reqRecord.Result = e.key.id, e.time, e.index, reqResult
		reqRecord.Scoped, reqRecord.Principal, reqRecord.Fingerprint = e.key.scoped, e.key.principal, e.fingerprint
		err = write(reqRec)
	}
	if err == nil {
		err = write(&eventsv1.SnapshotRecord{Record: &eventsv1.SnapshotRecord_Trailer{Trailer: &eventsv1.SnapshotTrailer{
			RecordCount: rw.count}}})
	}
	if err == nil {
		err = rw.w.Flush()
	}
	return rw.n, err
}

// keyRecorder fills one reused KeyRecord (with reused rotation, version and
// history records) from a key, so writing a snapshot allocates next to
// nothing per key. The record is valid until the next call.
type keyRecorder struct {
	rec      eventsv1.KeyRecord
	rot      eventsv1.RotationRecord
	versions []*eventsv1.VersionRecord
	history  []*eventsv1.HistoryRecord
}

func (kr *keyRecorder) record(k *Key) *eventsv1.KeyRecord {
	for len(kr.versions) < len(k.Versions) {
		kr.versions = append(kr.versions, &eventsv1.VersionRecord{})
	}
	for len(kr.history) < len(k.History) {
		kr.history = append(kr.history, &eventsv1.HistoryRecord{})
	}
	r := &kr.rec
	r.Reset()
	kr.rot.Reset()
	kr.rot.Enabled, kr.rot.PeriodSeconds = k.Rotation.Enabled, k.Rotation.PeriodSec
	kr.rot.LastRotationUnixNano, kr.rot.NextRotationUnixNano = k.Rotation.LastRotation, k.Rotation.NextRotation
	kr.rot.MaxDecryptionVersions = k.Rotation.MaxDecryptionVersions
	r.KeyId, r.Description, r.Origin, r.KeySpec, r.KeyUsage = k.ID, k.Description, k.Origin, k.KeySpec, k.KeyUsage
	r.State, r.CreatedUnixNano, r.DeletionUnixNano, r.OnDemandRotations = k.State, k.CreatedAt, k.DeletionAt, k.OnDemand
	r.Policy, r.ExpirationModel, r.ValidToUnixNano = k.Policy, k.Expiration, k.ValidTo
	r.Rotation = &kr.rot
	r.Versions = kr.versions[:len(k.Versions)]
	for i, v := range k.Versions {
		vr := r.Versions[i]
		vr.Reset()
		vr.Version, vr.RotationType, vr.CreatedUnixNano = v.Number, v.Type, v.CreatedAt
		vr.SealedMaterial, vr.MaterialFingerprint, vr.DestroyedUnixNano = v.Sealed, v.Fingerprint, v.DestroyedAt
	}
	r.MinDecryptionVersion = k.MinDecryptionVersion
	if st := k.Staged; st != nil {
		r.StagedMaterial = &eventsv1.StagedMaterialRecord{Version: st.Version, SealedMaterial: st.Sealed,
			MaterialFingerprint: st.Fingerprint, ExpirationModel: st.Expiration, ValidToUnixNano: st.ValidTo,
			ImportedUnixNano: st.ImportedAt}
	}
	r.History = kr.history[:len(k.History)]
	for i := range k.History {
		h, hr := &k.History[i], r.History[i]
		hr.Reset()
		hr.EventType, hr.TimeUnixNano, hr.Principal, hr.RequestId = h.Type, h.Time, h.Principal, h.RequestID
		hr.State, hr.Version, hr.Hash = h.State, h.Version, h.Hash[:]
	}
	if k.HistoryDropped > 0 {
		r.HistoryDropped, r.HistoryDroppedHead = k.HistoryDropped, k.HistoryDroppedHead[:]
	}
	// Rare: tags and import parameters get fresh records.
	for _, t := range k.Tags {
		r.Tags = append(r.Tags, &eventsv1.Tag{Key: t.Key, Value: t.Value})
	}
	if p := k.Import; p != nil {
		r.ImportParameters = &eventsv1.ImportParametersRecord{ImportTokenId: p.TokenID, WrappingKeySpec: p.WrappingKeySpec,
			WrappingAlgorithm: p.WrappingAlgorithm, PublicKeyDer: p.PublicKeyDER, SealedPrivateKey: p.SealedPrivateKey,
			ExpiresUnixNano: p.ExpiresAt}
	}
	for i := range k.Grants {
		r.Grants = append(r.Grants, grantRecord(&k.Grants[i]))
	}
	return r
}

func grantRecord(g *Grant) *eventsv1.GrantRecord {
	gr := &eventsv1.GrantRecord{GrantId: g.ID, GrantToken: g.Token, Name: g.Name, GranteePrincipal: g.Grantee,
		RetiringPrincipal: g.Retiring, IssuingPrincipal: g.Issuer, Operations: g.Operations, CreatedUnixNano: g.CreatedAt}
	if len(g.ECSubset) > 0 || len(g.ECEquals) > 0 {
		gr.Constraints = &eventsv1.GrantConstraints{}
		for _, t := range g.ECSubset {
			gr.Constraints.EncryptionContextSubset = append(gr.Constraints.EncryptionContextSubset, &eventsv1.Tag{Key: t.Key, Value: t.Value})
		}
		for _, t := range g.ECEquals {
			gr.Constraints.EncryptionContextEquals = append(gr.Constraints.EncryptionContextEquals, &eventsv1.Tag{Key: t.Key, Value: t.Value})
		}
	}
	return gr
}

func recordToKey(r *eventsv1.KeyRecord) (*Key, error) {
	if r.KeyId == "" {
		return nil, fmt.Errorf("%w: key record without ID", ErrCorruptSnapshot)
	}
	k := &Key{
		ID:          r.KeyId,
		Description: r.Description,
		Origin:      r.Origin,
		KeySpec:     r.KeySpec,
		KeyUsage:    r.KeyUsage,
		State:       r.State,
		CreatedAt:   r.CreatedUnixNano,
		DeletionAt:  r.DeletionUnixNano,
		OnDemand:    r.OnDemandRotations,
		Policy:      r.Policy,
		Expiration:  r.ExpirationModel,
		ValidTo:     r.ValidToUnixNano,
		Rotation: Rotation{
			Enabled:               r.GetRotation().GetEnabled(),
			PeriodSec:             r.GetRotation().GetPeriodSeconds(),
			LastRotation:          r.GetRotation().GetLastRotationUnixNano(),
			NextRotation:          r.GetRotation().GetNextRotationUnixNano(),
			MaxDecryptionVersions: r.GetRotation().GetMaxDecryptionVersions(),
		},
	}
	if len(r.Versions) > 0 {
		k.Versions = make([]Version, len(r.Versions))
	}
	for i, v := range r.Versions {
		if v.Version != uint32(i+1) {
			return nil, fmt.Errorf("%w: key %s version %d at position %d", ErrCorruptSnapshot, r.KeyId, v.Version, i+1)
		}
		k.Versions[i] = Version{Number: v.Version, Type: v.RotationType, CreatedAt: v.CreatedUnixNano,
			Sealed: v.SealedMaterial, Fingerprint: v.MaterialFingerprint, DestroyedAt: v.DestroyedUnixNano}
	}
	k.MinDecryptionVersion = r.MinDecryptionVersion
	if st := r.StagedMaterial; st != nil {
		k.Staged = &StagedMaterial{Version: st.Version, Sealed: st.SealedMaterial, Fingerprint: st.MaterialFingerprint,
			Expiration: st.ExpirationModel, ValidTo: st.ValidToUnixNano, ImportedAt: st.ImportedUnixNano}
	}
	for i, g := range r.Grants {
		if len(g.GrantId) != 64 || (i > 0 && r.Grants[i-1].GrantId >= g.GrantId) {
			return nil, fmt.Errorf("%w: key %s grants out of order", ErrCorruptSnapshot, r.KeyId)
		}
		k.Grants = append(k.Grants, Grant{ID: g.GrantId, Token: g.GrantToken, Name: g.Name, Grantee: g.GranteePrincipal,
			Retiring: g.RetiringPrincipal, Issuer: g.IssuingPrincipal, Operations: g.Operations,
			ECSubset: tagsFrom(g.GetConstraints().GetEncryptionContextSubset()),
			ECEquals: tagsFrom(g.GetConstraints().GetEncryptionContextEquals()), CreatedAt: g.CreatedUnixNano})
	}
	if len(r.History) > 0 {
		k.History = make([]HistoryEntry, len(r.History))
	}
	for i, h := range r.History {
		if len(h.Hash) != 32 {
			return nil, fmt.Errorf("%w: key %s history hash", ErrCorruptSnapshot, r.KeyId)
		}
		k.History[i] = HistoryEntry{Type: h.EventType, Time: h.TimeUnixNano, Principal: h.Principal,
			RequestID: h.RequestId, State: h.State, Version: h.Version}
		copy(k.History[i].Hash[:], h.Hash)
	}
	switch {
	case r.HistoryDropped > 0 && (len(r.HistoryDroppedHead) != 32 || len(r.History) == 0):
		return nil, fmt.Errorf("%w: key %s dropped history without its chain head", ErrCorruptSnapshot, r.KeyId)
	case r.HistoryDropped == 0 && len(r.HistoryDroppedHead) != 0:
		return nil, fmt.Errorf("%w: key %s history chain head without dropped entries", ErrCorruptSnapshot, r.KeyId)
	}
	k.HistoryDropped = r.HistoryDropped
	copy(k.HistoryDroppedHead[:], r.HistoryDroppedHead)
	for _, t := range r.Tags {
		k.Tags = append(k.Tags, Tag{Key: t.Key, Value: t.Value})
	}
	if p := r.ImportParameters; p != nil {
		k.Import = &ImportParams{TokenID: p.ImportTokenId, WrappingKeySpec: p.WrappingKeySpec,
			WrappingAlgorithm: p.WrappingAlgorithm, PublicKeyDER: p.PublicKeyDer, SealedPrivateKey: p.SealedPrivateKey,
			ExpiresAt: p.ExpiresUnixNano}
	}
	return k, nil
}

// readRecord reads one length-delimited record of at most limit bytes.
func readRecord(r *bufio.Reader, buf []byte, rec *eventsv1.SnapshotRecord, limit int) ([]byte, error) {
	size, err := binary.ReadUvarint(r)
	if err != nil {
		return buf, fmt.Errorf("%w: %v", ErrCorruptSnapshot, err)
	}
	if size > uint64(limit) {
		return buf, fmt.Errorf("%w: record of %d bytes", ErrCorruptSnapshot, size)
	}
	if uint64(cap(buf)) < size {
		buf = make([]byte, size)
	}
	buf = buf[:size]
	if _, err := io.ReadFull(r, buf); err != nil {
		return buf, fmt.Errorf("%w: %v", ErrCorruptSnapshot, err)
	}
	if err := proto.Unmarshal(buf, rec); err != nil {
		return buf, fmt.Errorf("%w: %v", ErrCorruptSnapshot, err)
	}
	return buf, nil
}

// Restore replaces the whole state with one read from r. The new state is
// built aside and swapped in only when the stream is complete, so a bad
// snapshot leaves the old state as it was.
func (f *FSM) Restore(r io.Reader) error {
	return f.restore(r, maxRecordSize, 0)
}

// RestoreAt is Restore for a snapshot taken at Raft index index: every key
// then counts as modified at index (ModIndex).
func (f *FSM) RestoreAt(r io.Reader, index uint64) error {
	return f.restore(r, maxRecordSize, index)
}

func (f *FSM) restore(r io.Reader, limit int, restoredAt uint64) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	var err error
	rec := &eventsv1.SnapshotRecord{}
	if buf, err = readRecord(br, buf, rec, limit); err != nil {
		return err
	}
	hdr := rec.GetHeader()
	if hdr == nil || hdr.FormatVersion != snapshotFormat {
		return fmt.Errorf("%w: missing or unknown header", ErrCorruptSnapshot)
	}
	n := &FSM{cfg: f.cfg}
	n.reset()
	n.clock = hdr.ClockUnixNano
	if len(hdr.RootKeyCheck) > 0 {
		n.rootKeyCheck, n.rootKeyID = bytes.Clone(hdr.RootKeyCheck), hdr.RootKeyId
	} else if hdr.RootKeyId != "" {
		return fmt.Errorf("%w: root-key ID without a check value", ErrCorruptSnapshot)
	}
	if (hdr.RotateRootKeyId == "") != (len(hdr.RotateRootKeyCheck) == 0) {
		return fmt.Errorf("%w: root-key rotation target without its check value", ErrCorruptSnapshot)
	}
	n.rotateRootID, n.rotateRootCheck = hdr.RotateRootKeyId, bytes.Clone(hdr.RotateRootKeyCheck)
	// Counts come from the stream, so cap preallocation.
	n.order = make([]*Key, 0, min(hdr.KeyCount, 1<<20))
	n.keys = make(map[string]*Key, min(hdr.KeyCount, 1<<20))
	n.requests = make(map[reqKey]*requestEntry, min(hdr.RequestCount, 1<<20))
	var records uint64 = 1
	for {
		rec.Reset()
		if buf, err = readRecord(br, buf, rec, limit); err != nil {
			return err
		}
		if t := rec.GetTrailer(); t != nil {
			if t.RecordCount != records {
				return fmt.Errorf("%w: %d records, trailer says %d", ErrCorruptSnapshot, records, t.RecordCount)
			}
			break
		}
		records++
		switch x := rec.Record.(type) {
		case *eventsv1.SnapshotRecord_Key:
			k, err := recordToKey(x.Key)
			if err != nil {
				return err
			}
			if _, dup := n.keys[k.ID]; dup {
				return fmt.Errorf("%w: duplicate key %s", ErrCorruptSnapshot, k.ID)
			}
			k.seq = len(n.order)
			n.order = append(n.order, k)
			n.keys[k.ID] = k
		case *eventsv1.SnapshotRecord_Alias:
			a := x.Alias
			n.aliases[a.AliasName] = &Alias{Name: a.AliasName, KeyID: a.TargetKeyId, CreatedAt: a.CreatedUnixNano, UpdatedAt: a.UpdatedUnixNano}
		case *eventsv1.SnapshotRecord_Node:
			nd := x.Node
			n.nodes[nd.NodeId] = Node{ID: nd.NodeId, GRPCAddr: nd.GrpcAddr, RaftAddr: nd.RaftAddr, MaxSchema: nd.MaxSchemaVersion}
		case *eventsv1.SnapshotRecord_AccessKey:
			a := x.AccessKey
			if a.AccessKeyId == "" {
				return fmt.Errorf("%w: access key record without ID", ErrCorruptSnapshot)
			}
			if _, dup := n.accessKeys[a.AccessKeyId]; dup {
				return fmt.Errorf("%w: duplicate access key %s", ErrCorruptSnapshot, a.AccessKeyId)
			}
			n.accessKeys[a.AccessKeyId] = &AccessKey{ID: a.AccessKeyId, Identity: a.Identity,
				SealedSecret: bytes.Clone(a.SealedSecret), CreatedAt: a.CreatedUnixNano}
		case *eventsv1.SnapshotRecord_Request:
			q := x.Request
			res := q.GetResult()
			if !q.Scoped && (q.Principal != "" || len(q.Fingerprint) > 0) {
				return fmt.Errorf("%w: unscoped request ID with a principal or fingerprint", ErrCorruptSnapshot)
			}
			e := &requestEntry{key: reqKey{scoped: q.Scoped, principal: q.Principal, id: q.RequestId},
				fingerprint: bytes.Clone(q.Fingerprint), time: q.TimeUnixNano, index: q.Index, result: storedResult{
					code: Code(res.GetCode()), msg: res.GetMessage(), keyID: res.GetKeyId(), version: res.GetVersion(),
					deletionTime: res.GetDeletionUnixNano(), grantID: res.GetGrantId()}}
			n.requests[e.key] = e
			n.reqQueue = append(n.reqQueue, e)
		default:
			return fmt.Errorf("%w: unexpected record", ErrCorruptSnapshot)
		}
	}
	if uint64(len(n.order)) != hdr.KeyCount || uint64(len(n.aliases)) != hdr.AliasCount ||
		uint64(len(n.nodes)) != hdr.NodeCount || uint64(len(n.reqQueue)) != hdr.RequestCount ||
		uint64(len(n.accessKeys)) != hdr.AccessKeyCount {
		return fmt.Errorf("%w: record counts do not match the header", ErrCorruptSnapshot)
	}

	f.mu.Lock()
	f.clock, f.keys, f.order, f.aliases, f.nodes = n.clock, n.keys, n.order, n.aliases, n.nodes
	f.requests, f.reqQueue, f.reqHead = n.requests, n.reqQueue, 0
	f.rootKeyCheck, f.rootKeyID = n.rootKeyCheck, n.rootKeyID
	f.rotateRootID, f.rotateRootCheck = n.rotateRootID, n.rotateRootCheck
	f.accessKeys = n.accessKeys
	f.modKeys, f.modOther, f.modFloor = nil, 0, restoredAt
	f.gen++
	f.mu.Unlock()
	if f.cfg.OnChange != nil {
		f.cfg.OnChange("")
	}
	return nil
}

// Digest is SHA-256 over the state's snapshot bytes: nodes at the same applied
// index have the same digest. It is cached until the next change.
func (f *FSM) Digest() [32]byte {
	f.digestMu.Lock()
	defer f.digestMu.Unlock()
	f.mu.RLock()
	gen := f.gen
	f.mu.RUnlock()
	if gen == f.digestGen && gen != 0 {
		return f.digest
	}
	s := f.Snapshot()
	h := sha256.New()
	if _, err := s.writeTo(h, 0); err != nil {
		panic(fmt.Sprintf("fsm: digest: %v", err)) // a hash never fails to write
	}
	copy(f.digest[:], h.Sum(nil))
	f.digestGen = s.gen
	return f.digest
}
