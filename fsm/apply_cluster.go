package fsm

import (
	"bytes"
	"strings"
)

func init() {
	register("create_alias", applyCreateAlias)
	register("update_alias", applyUpdateAlias)
	register("delete_alias", applyDeleteAlias)
	register("register_node", applyRegisterNode)
}

func validAliasName(name string) *Rejection {
	if !strings.HasPrefix(name, "alias/") || len(name) <= len("alias/") || len(name) > 256 {
		return reject(CodeValidation, "alias name %q must start with alias/", name)
	}
	return nil
}

// aliasTarget checks that a key may receive an alias.
func (f *FSM) aliasTarget(id string) (*Key, *Rejection) {
	k, r := f.editKey(id)
	if r != nil {
		return nil, r
	}
	if k.State == stPendingDeletion {
		return nil, invalidState(k)
	}
	return k, nil
}

func applyCreateAlias(f *FSM, c *applyCtx) *Result {
	e := c.env.GetCreateAlias()
	if r := validAliasName(e.AliasName); r != nil {
		return failed(e.TargetKeyId, r)
	}
	if _, ok := f.aliases[e.AliasName]; ok {
		return failed(e.TargetKeyId, reject(CodeAlreadyExists, "alias %s already exists", e.AliasName))
	}
	k, r := f.aliasTarget(e.TargetKeyId)
	if r != nil {
		return failed(e.TargetKeyId, r)
	}
	f.aliases[e.AliasName] = &Alias{Name: e.AliasName, KeyID: k.ID, CreatedAt: c.t, UpdatedAt: c.t}
	return f.commit(c, k)
}

// aliasGuard checks a schema-2 UpdateAlias/DeleteAlias guard: the request
// was authorized against the alias's target expected, so if the alias has
// moved since, the change is refused rather than made on an authorization
// that no longer holds. The message does not name the current target.
func aliasGuard(c *applyCtx, a *Alias, expected string) *Rejection {
	if !c.strict() || expected == "" || expected == a.KeyID {
		return nil
	}
	return reject(CodeAliasTargetChanged, "alias %s no longer points to key %s; read it again and retry", a.Name, expected)
}

func applyUpdateAlias(f *FSM, c *applyCtx) *Result {
	e := c.env.GetUpdateAlias()
	a, ok := f.aliases[e.AliasName]
	if !ok {
		return failed(e.TargetKeyId, reject(CodeNotFound, "alias %s is not found", e.AliasName))
	}
	if r := aliasGuard(c, a, e.ExpectedTargetKeyId); r != nil {
		return failed(e.TargetKeyId, r)
	}
	k, r := f.aliasTarget(e.TargetKeyId)
	if r != nil {
		return failed(e.TargetKeyId, r)
	}
	f.aliases[e.AliasName] = &Alias{Name: a.Name, KeyID: k.ID, CreatedAt: a.CreatedAt, UpdatedAt: c.t}
	return f.commit(c, k)
}

func applyDeleteAlias(f *FSM, c *applyCtx) *Result {
	e := c.env.GetDeleteAlias()
	a, ok := f.aliases[e.AliasName]
	if !ok {
		return failed("", reject(CodeNotFound, "alias %s is not found", e.AliasName))
	}
	if r := aliasGuard(c, a, e.ExpectedTargetKeyId); r != nil {
		return failed("", r)
	}
	delete(f.aliases, e.AliasName)
	cp := *f.keys[a.KeyID]
	return f.commit(c, &cp)
}

// applyRegisterNode records a node's addresses. From schema 2 on, the first
// registration carrying a root-key check value sets the cluster's; one with a
// different check value is refused and changes nothing. Registrations without
// one (older nodes, older entries) apply as before.
func applyRegisterNode(f *FSM, c *applyCtx) *Result {
	e := c.env.GetRegisterNode()
	if e.NodeId == "" {
		return failed("", reject(CodeValidation, "node ID is required"))
	}
	if check := e.RootKeyCheck; c.strict() && len(check) > 0 {
		switch {
		case f.rootKeyCheck == nil:
			f.rootKeyCheck, f.rootKeyID = append([]byte(nil), check...), e.RootKeyId
		case !bytes.Equal(check, f.rootKeyCheck):
			return failed("", reject(CodeRootKeyMismatch,
				"node %s holds root key %q, which is not the cluster's root key %q", e.NodeId, e.RootKeyId, f.rootKeyID))
		}
	}
	f.nodes[e.NodeId] = Node{ID: e.NodeId, GRPCAddr: e.GrpcAddr, RaftAddr: e.RaftAddr, MaxSchema: e.MaxSchemaVersion}
	return &Result{}
}
