package raftnode

import (
	"sync"
	"time"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

// membersTTL is how long ProposeSchema trusts its copy of the Raft
// configuration; reading it costs a round through Raft's main loop, too
// much for every proposal.
const membersTTL = time.Second

// schemaMembers caches the IDs of the latest Raft configuration.
type schemaMembers struct {
	mu   sync.Mutex
	ids  map[string]bool
	read time.Time
}

// ProposeSchema is the envelope schema this node proposes at: the lowest of
// its own newest schema and the schemas every registered member of the
// Raft configuration announced (a member that announced none is an older
// build: schema 1). A member not registered yet is not counted: it joined
// after the log it replays was written, and registers before long.
func (n *Node) ProposeSchema() uint32 {
	f := n.cfg.FSM
	schema := f.MaxSchema()
	ids := n.memberIDs()
	for _, nd := range f.Nodes() {
		if ids != nil && !ids[nd.ID] {
			continue // registered once, no longer a member
		}
		schema = min(schema, nd.SupportedSchema())
	}
	return schema
}

func (n *Node) memberIDs() map[string]bool {
	m := &n.schemaMembers
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ids != nil && time.Since(m.read) < membersTTL {
		return m.ids
	}
	members, err := n.Members()
	if err != nil {
		return m.ids // the last known, or nil: every registered node counts
	}
	ids := make(map[string]bool, len(members))
	for _, mb := range members {
		ids[mb.ID] = true
	}
	m.ids, m.read = ids, time.Now()
	return ids
}

// capSchema lowers an envelope's schema to what every member understands.
// Events of unchanged types keep their meaning at the older schema; they
// apply under that schema's rules on every node alike.
func (n *Node) capSchema(env *eventsv1.Envelope) {
	if s := n.ProposeSchema(); env.SchemaVersion == 0 || env.SchemaVersion > s {
		env.SchemaVersion = s
	}
}
