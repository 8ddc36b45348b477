package main

import (
	"encoding/hex"

	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
)

func init() {
	register("create-alias", "Creates an alias (alias/NAME) for a key.", "alias-name! target-key-id!",
		func(e *env, p *params) (any, error) {
			_, err := e.kms().CreateAlias(e.ctx, &kmsv1.CreateAliasRequest{AliasName: p.str("alias-name"), TargetKeyId: p.str("target-key-id")})
			return nil, err
		})
	register("update-alias", "Points an alias at another key.", "alias-name! target-key-id!",
		func(e *env, p *params) (any, error) {
			_, err := e.kms().UpdateAlias(e.ctx, &kmsv1.UpdateAliasRequest{AliasName: p.str("alias-name"), TargetKeyId: p.str("target-key-id")})
			return nil, err
		})
	register("delete-alias", "Deletes an alias.", "alias-name!", func(e *env, p *params) (any, error) {
		_, err := e.kms().DeleteAlias(e.ctx, &kmsv1.DeleteAliasRequest{AliasName: p.str("alias-name")})
		return nil, err
	})
	register("list-aliases", "Lists aliases (of one key with --key-id).", "key-id"+pageFlags, listAliases)
	register("update-key-description", "Changes a key's description.", "key-id! description!",
		func(e *env, p *params) (any, error) {
			d, err := p.text("description")
			if err != nil {
				return nil, err
			}
			_, err = e.kms().UpdateKeyDescription(e.ctx, &kmsv1.UpdateKeyDescriptionRequest{KeyId: p.str("key-id"), Description: d})
			return nil, err
		})
	register("tag-resource", "Adds or changes tags of a key.", "key-id! tags!", func(e *env, p *params) (any, error) {
		tags, err := parseTags(p.list("tags"))
		if err != nil {
			return nil, err
		}
		_, err = e.kms().TagResource(e.ctx, &kmsv1.TagResourceRequest{KeyId: p.str("key-id"), Tags: tags})
		return nil, err
	})
	register("untag-resource", "Removes tags from a key.", "key-id! tag-keys!", func(e *env, p *params) (any, error) {
		keys, err := parseStringList("tag-keys", p.list("tag-keys"))
		if err != nil {
			return nil, err
		}
		_, err = e.kms().UntagResource(e.ctx, &kmsv1.UntagResourceRequest{KeyId: p.str("key-id"), TagKeys: keys})
		return nil, err
	})
	register("list-resource-tags", "Lists a key's tags.", "key-id!"+pageFlags, listResourceTags)
	register("put-key-policy", "Sets a key's policy.", "key-id! policy-name policy! bypass-policy-lockout-safety-check",
		func(e *env, p *params) (any, error) {
			policy, err := p.text("policy")
			if err != nil {
				return nil, err
			}
			_, err = e.kms().PutKeyPolicy(e.ctx, &kmsv1.PutKeyPolicyRequest{
				KeyId: p.str("key-id"), PolicyName: p.str("policy-name"), Policy: policy,
				BypassPolicyLockoutSafetyCheck: p.flag("bypass-policy-lockout-safety-check"),
			})
			return nil, err
		})
	register("get-key-policy", "Shows a key's policy.", "key-id! policy-name", func(e *env, p *params) (any, error) {
		r, err := e.kms().GetKeyPolicy(e.ctx, &kmsv1.GetKeyPolicyRequest{KeyId: p.str("key-id"), PolicyName: p.str("policy-name")})
		if err != nil {
			return nil, err
		}
		return keyPolicyDoc{Policy: r.GetPolicy(), PolicyName: r.GetPolicyName()}, nil
	})
	register("list-key-events", "Lists a key's hash-chained event history (raftkms extension).", "key-id!"+pageFlags, listKeyEvents)

	register("cluster status", "Shows the answering node's view of the cluster.", "", func(e *env, p *params) (any, error) {
		r, err := e.cluster().Status(e.ctx, &clusterv1.StatusRequest{})
		if err != nil {
			return nil, err
		}
		return clusterStatusOf(r), nil
	})
	register("cluster join", "Adds a node to the cluster as a voter.", "node-id! raft-addr! grpc-addr!",
		func(e *env, p *params) (any, error) {
			_, err := e.cluster().Join(e.ctx, &clusterv1.JoinRequest{NodeId: p.str("node-id"), RaftAddr: p.str("raft-addr"), GrpcAddr: p.str("grpc-addr")})
			return nil, err
		})
	register("cluster remove", "Takes a node out of the cluster.", "node-id!", func(e *env, p *params) (any, error) {
		_, err := e.cluster().Remove(e.ctx, &clusterv1.RemoveRequest{NodeId: p.str("node-id")})
		return nil, err
	})
	register("cluster transfer-leadership", "Asks the leader to hand over (to --target-node-id, or the best voter).",
		"target-node-id", func(e *env, p *params) (any, error) {
			_, err := e.cluster().TransferLeadership(e.ctx, &clusterv1.TransferLeadershipRequest{TargetNodeId: p.str("target-node-id")})
			return nil, err
		})
	register("cluster rotate-root-key", "Re-seals everything under the newest key of the leader's root keyring, "+
		"then records it as the cluster's root key; `cluster status` shows the progress (SealedByRootKey).", "",
		func(e *env, p *params) (any, error) {
			r, err := e.cluster().RotateRootKey(e.ctx, &clusterv1.RotateRootKeyRequest{})
			if err != nil {
				return nil, err
			}
			return rotateRootKeyDoc{TargetRootKeyID: r.GetTargetRootKeyId(), Remaining: r.GetRemaining()}, nil
		})
	register("cluster snapshot", "Makes the answering node take a Raft snapshot now.", "", func(e *env, p *params) (any, error) {
		r, err := e.cluster().Snapshot(e.ctx, &clusterv1.SnapshotRequest{})
		if err != nil {
			return nil, err
		}
		return snapshotDoc{Index: r.GetIndex()}, nil
	})
}

func listAliases(e *env, p *params) (any, error) {
	pg, err := pagerOf(p)
	if err != nil {
		return nil, err
	}
	items, tail, err := collect(pg, func(marker string, limit int32) ([]aliasEntry, string, bool, error) {
		r, err := e.kms().ListAliases(e.ctx, &kmsv1.ListAliasesRequest{KeyId: p.str("key-id"), Limit: limit, Marker: marker})
		if err != nil {
			return nil, "", false, err
		}
		var out []aliasEntry
		for _, a := range r.GetAliases() {
			out = append(out, aliasEntry{
				AliasName:       a.GetAliasName(),
				AliasArn:        a.GetAliasArn(),
				TargetKeyID:     a.GetTargetKeyId(),
				CreationDate:    tsOf(a.GetCreationDate()),
				LastUpdatedDate: tsOf(a.GetLastUpdatedDate()),
			})
		}
		return out, r.GetNextMarker(), r.GetTruncated(), nil
	})
	if err != nil {
		return nil, err
	}
	return listAliasesDoc{Aliases: items, paging: tail}, nil
}

func listResourceTags(e *env, p *params) (any, error) {
	pg, err := pagerOf(p)
	if err != nil {
		return nil, err
	}
	items, tail, err := collect(pg, func(marker string, limit int32) ([]tagEntry, string, bool, error) {
		r, err := e.kms().ListResourceTags(e.ctx, &kmsv1.ListResourceTagsRequest{KeyId: p.str("key-id"), Limit: limit, Marker: marker})
		if err != nil {
			return nil, "", false, err
		}
		var out []tagEntry
		for _, t := range r.GetTags() {
			out = append(out, tagEntry{TagKey: t.GetTagKey(), TagValue: t.GetTagValue()})
		}
		return out, r.GetNextMarker(), r.GetTruncated(), nil
	})
	if err != nil {
		return nil, err
	}
	return listResourceTagsDoc{Tags: items, paging: tail}, nil
}

func listKeyEvents(e *env, p *params) (any, error) {
	pg, err := pagerOf(p)
	if err != nil {
		return nil, err
	}
	keyID := ""
	items, tail, err := collect(pg, func(marker string, limit int32) ([]keyEventEntry, string, bool, error) {
		r, err := e.kms().ListKeyEvents(e.ctx, &kmsv1.ListKeyEventsRequest{KeyId: p.str("key-id"), Limit: limit, Marker: marker})
		if err != nil {
			return nil, "", false, err
		}
		keyID = r.GetKeyId()
		var out []keyEventEntry
		for _, ev := range r.GetEvents() {
			out = append(out, keyEventEntry{
				EventType:  ev.GetEventType(),
				Time:       tsOf(ev.GetTime()),
				Principal:  ev.GetPrincipal(),
				RequestID:  ev.GetRequestId(),
				KeyState:   ev.GetKeyState(),
				KeyVersion: ev.GetKeyVersion(),
				Hash:       hex.EncodeToString(ev.GetHash()),
			})
		}
		return out, r.GetNextMarker(), r.GetTruncated(), nil
	})
	if err != nil {
		return nil, err
	}
	return listKeyEventsDoc{KeyID: keyID, Events: items, paging: tail}, nil
}
