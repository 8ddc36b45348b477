package fsm

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"sort"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	"google.golang.org/protobuf/proto"
)

// snapshotFormat is the version of the snapshot stream layout.
const snapshotFormat = 1

// maxRecordSize bounds one snapshot record when reading (a key with a very
// long history is the largest record).
const maxRecordSize = 256 << 20

// Snapshot is a point-in-time view of the state. Taking it copies only
// pointers under the lock (keys are copy-on-write); writing it out streams
// one record at a time while Apply goes on.
type Snapshot struct {
	gen      uint64
	clock    int64
	keys     []*Key
	aliases  []Alias
	nodes    []Node
	requests []*requestEntry
}

// Snapshot captures the current state.
func (f *FSM) Snapshot() *Snapshot {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := &Snapshot{
		gen:      f.gen,
		clock:    f.clock,
		keys:     make([]*Key, len(f.order)),
		aliases:  make([]Alias, 0, len(f.aliases)),
		nodes:    make([]Node, 0, len(f.nodes)),
		requests: make([]*requestEntry, len(f.reqQueue)-f.reqHead),
	}
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
}

func (rw *recordWriter) write(rec *eventsv1.SnapshotRecord) error {
	var err error
	rw.buf = binary.AppendUvarint(rw.buf[:0], uint64(marshalOpts.Size(rec)))
	rw.buf, err = marshalOpts.MarshalAppend(rw.buf, rec)
	if err != nil {
		return err
	}
	m, err := rw.w.Write(rw.buf)
	rw.n += int64(m)
	rw.count++
	return err
}

// WriteTo streams the snapshot to w. The same state always gives the same
// bytes, so the bytes' hash is the state digest.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	rw := &recordWriter{w: bufio.NewWriterSize(w, 64<<10)}
	write := func(rec *eventsv1.SnapshotRecord) error { return rw.write(rec) }
	err := write(&eventsv1.SnapshotRecord{Record: &eventsv1.SnapshotRecord_Header{Header: &eventsv1.SnapshotHeader{
		FormatVersion: snapshotFormat,
		ClockUnixNano: s.clock,
		KeyCount:      uint64(len(s.keys)),
		AliasCount:    uint64(len(s.aliases)),
		NodeCount:     uint64(len(s.nodes)),
		RequestCount:  uint64(len(s.requests)),
	}}})
	for _, k := range s.keys {
		if err != nil {
			break
		}
		err = write(&eventsv1.SnapshotRecord{Record: &eventsv1.SnapshotRecord_Key{Key: keyToRecord(k)}})
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
			NodeId: n.ID, GrpcAddr: n.GRPCAddr, RaftAddr: n.RaftAddr}}})
	}
	for _, e := range s.requests {
		if err != nil {
			break
		}
		r := e.result
		err = write(&eventsv1.SnapshotRecord{Record: &eventsv1.SnapshotRecord_Request{Request: &eventsv1.RequestRecord{
			RequestId: e.id, TimeUnixNano: e.time, Result: &eventsv1.ResultRecord{
				Code: uint32(r.code), Message: r.msg, KeyId: r.keyID, Version: r.version, DeletionUnixNano: r.deletionTime}}}})
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

func keyToRecord(k *Key) *eventsv1.KeyRecord {
	r := &eventsv1.KeyRecord{
		KeyId:             k.ID,
		Description:       k.Description,
		Origin:            k.Origin,
		KeySpec:           k.KeySpec,
		KeyUsage:          k.KeyUsage,
		State:             k.State,
		CreatedUnixNano:   k.CreatedAt,
		DeletionUnixNano:  k.DeletionAt,
		OnDemandRotations: k.OnDemand,
		Policy:            k.Policy,
		ExpirationModel:   k.Expiration,
		ValidToUnixNano:   k.ValidTo,
		Rotation: &eventsv1.RotationRecord{
			Enabled:              k.Rotation.Enabled,
			PeriodSeconds:        k.Rotation.PeriodSec,
			LastRotationUnixNano: k.Rotation.LastRotation,
			NextRotationUnixNano: k.Rotation.NextRotation,
		},
		Versions: make([]*eventsv1.VersionRecord, len(k.Versions)),
		History:  make([]*eventsv1.HistoryRecord, len(k.History)),
	}
	for i, v := range k.Versions {
		r.Versions[i] = &eventsv1.VersionRecord{Version: v.Number, RotationType: v.Type, CreatedUnixNano: v.CreatedAt,
			SealedMaterial: v.Sealed, MaterialFingerprint: v.Fingerprint}
	}
	for i := range k.History {
		h := &k.History[i]
		r.History[i] = &eventsv1.HistoryRecord{EventType: h.Type, TimeUnixNano: h.Time, Principal: h.Principal,
			RequestId: h.RequestID, State: h.State, Version: h.Version, Hash: h.Hash[:]}
	}
	for _, t := range k.Tags {
		r.Tags = append(r.Tags, &eventsv1.Tag{Key: t.Key, Value: t.Value})
	}
	if p := k.Import; p != nil {
		r.ImportParameters = &eventsv1.ImportParametersRecord{ImportTokenId: p.TokenID, WrappingKeySpec: p.WrappingKeySpec,
			WrappingAlgorithm: p.WrappingAlgorithm, PublicKeyDer: p.PublicKeyDER, SealedPrivateKey: p.SealedPrivateKey,
			ExpiresUnixNano: p.ExpiresAt}
	}
	return r
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
			Enabled:      r.GetRotation().GetEnabled(),
			PeriodSec:    r.GetRotation().GetPeriodSeconds(),
			LastRotation: r.GetRotation().GetLastRotationUnixNano(),
			NextRotation: r.GetRotation().GetNextRotationUnixNano(),
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
			Sealed: v.SealedMaterial, Fingerprint: v.MaterialFingerprint}
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

// readRecord reads one length-delimited record.
func readRecord(r *bufio.Reader, buf []byte, rec *eventsv1.SnapshotRecord) ([]byte, error) {
	size, err := binary.ReadUvarint(r)
	if err != nil {
		return buf, fmt.Errorf("%w: %v", ErrCorruptSnapshot, err)
	}
	if size > maxRecordSize {
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
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	var err error
	rec := &eventsv1.SnapshotRecord{}
	if buf, err = readRecord(br, buf, rec); err != nil {
		return err
	}
	hdr := rec.GetHeader()
	if hdr == nil || hdr.FormatVersion != snapshotFormat {
		return fmt.Errorf("%w: missing or unknown header", ErrCorruptSnapshot)
	}
	n := &FSM{cfg: f.cfg}
	n.reset()
	n.clock = hdr.ClockUnixNano
	// Counts come from the stream, so cap preallocation.
	n.order = make([]*Key, 0, min(hdr.KeyCount, 1<<20))
	var records uint64 = 1
	for {
		rec.Reset()
		if buf, err = readRecord(br, buf, rec); err != nil {
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
			n.nodes[nd.NodeId] = Node{ID: nd.NodeId, GRPCAddr: nd.GrpcAddr, RaftAddr: nd.RaftAddr}
		case *eventsv1.SnapshotRecord_Request:
			q := x.Request
			res := q.GetResult()
			e := &requestEntry{id: q.RequestId, time: q.TimeUnixNano, result: storedResult{
				code: Code(res.GetCode()), msg: res.GetMessage(), keyID: res.GetKeyId(), version: res.GetVersion(),
				deletionTime: res.GetDeletionUnixNano()}}
			n.requests[e.id] = e
			n.reqQueue = append(n.reqQueue, e)
		default:
			return fmt.Errorf("%w: unexpected record", ErrCorruptSnapshot)
		}
	}
	if uint64(len(n.order)) != hdr.KeyCount || uint64(len(n.aliases)) != hdr.AliasCount ||
		uint64(len(n.nodes)) != hdr.NodeCount || uint64(len(n.reqQueue)) != hdr.RequestCount {
		return fmt.Errorf("%w: record counts do not match the header", ErrCorruptSnapshot)
	}

	f.mu.Lock()
	f.clock, f.keys, f.order, f.aliases, f.nodes = n.clock, n.keys, n.order, n.aliases, n.nodes
	f.requests, f.reqQueue, f.reqHead = n.requests, n.reqQueue, 0
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
	if _, err := s.WriteTo(h); err != nil {
		panic(fmt.Sprintf("fsm: digest: %v", err)) // a hash never fails to write
	}
	copy(f.digest[:], h.Sum(nil))
	f.digestGen = s.gen
	return f.digest
}
