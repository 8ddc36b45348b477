package fsm

import (
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

func applyUpdateAlias(f *FSM, c *applyCtx) *Result {
	e := c.env.GetUpdateAlias()
	a, ok := f.aliases[e.AliasName]
	if !ok {
		return failed(e.TargetKeyId, reject(CodeNotFound, "alias %s is not found", e.AliasName))
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
	delete(f.aliases, e.AliasName)
	cp := *f.keys[a.KeyID]
	return f.commit(c, &cp)
}

func applyRegisterNode(f *FSM, c *applyCtx) *Result {
	e := c.env.GetRegisterNode()
	if e.NodeId == "" {
		return failed("", reject(CodeValidation, "node ID is required"))
	}
	f.nodes[e.NodeId] = Node{ID: e.NodeId, GRPCAddr: e.GrpcAddr, RaftAddr: e.RaftAddr}
	return &Result{}
}
