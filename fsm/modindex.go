package fsm

// Modification indexes: for each key, the Raft index of the last applied entry
// that changed what a read of that key can observe, and one index for
// everything not tied to a single key (aliases, access keys, nodes, the root
// key). A node that serves a read from its local state holds the answer until
// the cluster has made that index visible (quorum read leases, DESIGN §5), so
// a read of one key is never held up by writes to others. The indexes are not
// state: they are not in snapshots or the digest, and a restored state counts
// as changed everywhere at the index it was restored at.

// otherEvents are the events whose effect reaches beyond the key they name
// (an alias resolves to a key; deleting it changes what a name resolves to).
var otherEvents = map[string]bool{
	"CreateAlias": true, "UpdateAlias": true, "DeleteAlias": true,
}

// touch records that this entry changes what reads of key id observe. Handlers
// that change several keys in one entry call it for each; commit calls it.
func (c *applyCtx) touch(id string) {
	if id == "" {
		return
	}
	c.touched = append(c.touched, id)
}

// noteModified records the modification indexes of one applied entry; f.mu is
// held, so a reader that sees the entry's effect also sees its index.
func (f *FSM) noteModified(index uint64, c *applyCtx, res *Result) {
	if res != nil && res.Err != nil {
		return // a rejected event changes nothing a read observes
	}
	if len(c.touched) == 0 && c.keysOnly {
		return // nothing in it applied
	}
	if len(c.touched) == 0 || otherEvents[c.name] {
		f.modOther = index
	}
	if f.modKeys == nil {
		f.modKeys = map[string]uint64{}
	}
	for _, id := range c.touched {
		f.modKeys[id] = index
	}
}

// ModIndex is the highest Raft index at which anything a read of these keys
// could observe last changed: the keys' own indexes and the index of the last
// change not tied to one key. With no key IDs it is the applied index: a read
// that cannot name what it looked at depends on everything.
func (f *FSM) ModIndex(keyIDs ...string) uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if len(keyIDs) == 0 {
		return f.applied
	}
	m := max(f.modOther, f.modFloor)
	for _, id := range keyIDs {
		m = max(m, f.modKeys[id])
	}
	return m
}
