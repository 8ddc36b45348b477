package fsm

// Rolling upgrades. A node announces the newest event schema it understands
// (RegisterNode.max_schema_version, recorded in Node.MaxSchema), and a leader
// proposes at the lowest schema its members announced (raftnode), so a node
// never receives an entry it cannot apply while a cluster is upgraded one
// node at a time. An event type that exists only from some schema on must
// then not be proposed before every member supports it.

// MaxSchema is the newest envelope schema this node accepts and announces.
func (f *FSM) MaxSchema() uint32 { return f.cfg.MaxSchema }

// LastSchema is the schema of the last entry this node applied (0 before
// any, and after a restore).
func (f *FSM) LastSchema() uint32 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.lastSchema
}
