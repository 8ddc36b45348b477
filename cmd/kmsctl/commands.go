package main

import (
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
)

// command is one kmsctl command: its AWS CLI name, its flags, and what it
// does. run returns the document to print, or nil to print nothing (the
// AWS responses that are empty).
type command struct {
	name    string
	summary string
	flags   []flagSpec
	args    []string // positional arguments it takes, by name ("FILE"); all required
	run     func(e *env, p *params) (any, error)
}

// commands are all commands by name; those of a group are "group sub".
var commands = map[string]*command{}

// groups are the command names that take a subcommand.
var groups = map[string]bool{"cluster": true}

func register(name, summary, flags string, run func(e *env, p *params) (any, error)) {
	if _, dup := commands[name]; dup {
		panic("kmsctl: command registered twice: " + name)
	}
	commands[name] = &command{name: name, summary: summary, flags: parseFlagSpecs(name, flags), run: run}
}

// pageFlags are the paging flags of list commands: AWS's own --limit and
// --marker (one call, NextMarker printed), and the AWS CLI's --max-items,
// --page-size and --starting-token (automatic pagination).
const pageFlags = " limit marker max-items page-size starting-token"

func init() {
	register("create-key", "Creates a KMS key.",
		"policy description key-usage key-spec customer-master-key-spec origin tags "+
			"bypass-policy-lockout-safety-check managed", createKey)
	register("describe-key", "Shows a key's metadata.", "key-id! grant-tokens", describeKey)
	register("list-keys", "Lists the keys.", pageFlags[1:], listKeys)
	register("enable-key", "Enables a key.", "key-id!", func(e *env, p *params) (any, error) {
		_, err := e.kms().EnableKey(e.ctx, &kmsv1.EnableKeyRequest{KeyId: p.str("key-id")})
		return nil, err
	})
	register("disable-key", "Disables a key.", "key-id!", func(e *env, p *params) (any, error) {
		_, err := e.kms().DisableKey(e.ctx, &kmsv1.DisableKeyRequest{KeyId: p.str("key-id")})
		return nil, err
	})
	register("schedule-key-deletion", "Schedules a key's deletion after a waiting period.",
		"key-id! pending-window-in-days pending-window", scheduleKeyDeletion)
	register("cancel-key-deletion", "Cancels a scheduled deletion; the key is left disabled.", "key-id!",
		func(e *env, p *params) (any, error) {
			r, err := e.kms().CancelKeyDeletion(e.ctx, &kmsv1.CancelKeyDeletionRequest{KeyId: p.str("key-id")})
			if err != nil {
				return nil, err
			}
			return keyIDDoc{r.GetKeyId()}, nil
		})
	register("enable-key-rotation", "Turns on automatic rotation.",
		"key-id! rotation-period-in-days rotation-period max-decryption-versions", enableKeyRotation)
	register("disable-key-rotation", "Turns off automatic rotation.", "key-id!", func(e *env, p *params) (any, error) {
		_, err := e.kms().DisableKeyRotation(e.ctx, &kmsv1.DisableKeyRotationRequest{KeyId: p.str("key-id")})
		return nil, err
	})
	register("get-key-rotation-status", "Shows a key's rotation setting and schedule.", "key-id!", getKeyRotationStatus)
	register("rotate-key-on-demand", "Rotates a key now.", "key-id!", func(e *env, p *params) (any, error) {
		r, err := e.kms().RotateKeyOnDemand(e.ctx, &kmsv1.RotateKeyOnDemandRequest{KeyId: p.str("key-id")})
		if err != nil {
			return nil, err
		}
		return keyVersionDoc{r.GetKeyId(), r.GetKeyVersion()}, nil
	})
	register("list-key-rotations", "Lists a key's rotations and key materials.", "key-id! include-key-material"+pageFlags, listKeyRotations)
}

func createKey(e *env, p *params) (any, error) {
	req := &kmsv1.CreateKeyRequest{
		KeyUsage:                       p.str("key-usage"),
		KeySpec:                        p.str("key-spec"),
		CustomerMasterKeySpec:          p.str("customer-master-key-spec"),
		Origin:                         p.str("origin"),
		BypassPolicyLockoutSafetyCheck: p.flag("bypass-policy-lockout-safety-check"),
		Managed:                        p.flag("managed"),
	}
	var err error
	if req.Policy, err = p.text("policy"); err != nil {
		return nil, err
	}
	if req.Description, err = p.text("description"); err != nil {
		return nil, err
	}
	if p.has("tags") {
		if req.Tags, err = parseTags(p.list("tags")); err != nil {
			return nil, err
		}
	}
	r, err := e.kms().CreateKey(e.ctx, req)
	if err != nil {
		return nil, err
	}
	return keyMetadataOf(r.GetKeyMetadata()), nil
}

func describeKey(e *env, p *params) (any, error) {
	r, err := e.kms().DescribeKey(e.ctx, &kmsv1.DescribeKeyRequest{KeyId: p.str("key-id")})
	if err != nil {
		return nil, err
	}
	return keyMetadataOf(r.GetKeyMetadata()), nil
}

func scheduleKeyDeletion(e *env, p *params) (any, error) {
	req := &kmsv1.ScheduleKeyDeletionRequest{KeyId: p.str("key-id")}
	var err error
	if req.PendingWindowInDays, err = p.int32("pending-window-in-days"); err != nil {
		return nil, err
	}
	if req.PendingWindowSeconds, err = p.seconds("pending-window"); err != nil {
		return nil, err
	}
	if req.PendingWindowInDays != 0 && req.PendingWindowSeconds != 0 {
		return nil, usagef("give --pending-window-in-days or --pending-window, not both")
	}
	r, err := e.kms().ScheduleKeyDeletion(e.ctx, req)
	if err != nil {
		return nil, err
	}
	return scheduleKeyDeletionDoc{
		KeyID:               r.GetKeyId(),
		DeletionDate:        tsOf(r.GetDeletionDate()),
		KeyState:            r.GetKeyState(),
		PendingWindowInDays: r.GetPendingWindowInDays(),
	}, nil
}

func enableKeyRotation(e *env, p *params) (any, error) {
	req := &kmsv1.EnableKeyRotationRequest{KeyId: p.str("key-id")}
	var err error
	if req.RotationPeriodInDays, err = p.int32("rotation-period-in-days"); err != nil {
		return nil, err
	}
	if req.RotationPeriodSeconds, err = p.seconds("rotation-period"); err != nil {
		return nil, err
	}
	n, err := p.int32("max-decryption-versions")
	if err != nil {
		return nil, err
	}
	req.MaxDecryptionVersions = uint32(n)
	if req.RotationPeriodInDays != 0 && req.RotationPeriodSeconds != 0 {
		return nil, usagef("give --rotation-period-in-days or --rotation-period, not both")
	}
	_, err = e.kms().EnableKeyRotation(e.ctx, req)
	return nil, err
}

func getKeyRotationStatus(e *env, p *params) (any, error) {
	r, err := e.kms().GetKeyRotationStatus(e.ctx, &kmsv1.GetKeyRotationStatusRequest{KeyId: p.str("key-id")})
	if err != nil {
		return nil, err
	}
	return rotationStatusDoc{
		KeyRotationEnabled:        r.GetKeyRotationEnabled(),
		KeyID:                     r.GetKeyId(),
		RotationPeriodInDays:      r.GetRotationPeriodInDays(),
		NextRotationDate:          tsOf(r.GetNextRotationDate()),
		OnDemandRotationStartDate: tsOf(r.GetOnDemandRotationStartDate()),
		RotationPeriodSeconds:     r.GetRotationPeriodSeconds(),
		MaxDecryptionVersions:     r.GetMaxDecryptionVersions(),
	}, nil
}

func listKeys(e *env, p *params) (any, error) {
	pg, err := pagerOf(p)
	if err != nil {
		return nil, err
	}
	items, tail, err := collect(pg, func(marker string, limit int32) ([]keyListEntry, string, bool, error) {
		r, err := e.kms().ListKeys(e.ctx, &kmsv1.ListKeysRequest{Limit: limit, Marker: marker})
		if err != nil {
			return nil, "", false, err
		}
		var out []keyListEntry
		for _, k := range r.GetKeys() {
			out = append(out, keyListEntry{KeyID: k.GetKeyId(), KeyArn: k.GetKeyArn()})
		}
		return out, r.GetNextMarker(), r.GetTruncated(), nil
	})
	if err != nil {
		return nil, err
	}
	return listKeysDoc{Keys: items, paging: tail}, nil
}

func listKeyRotations(e *env, p *params) (any, error) {
	pg, err := pagerOf(p)
	if err != nil {
		return nil, err
	}
	items, tail, err := collect(pg, func(marker string, limit int32) ([]rotationEntry, string, bool, error) {
		r, err := e.kms().ListKeyRotations(e.ctx, &kmsv1.ListKeyRotationsRequest{KeyId: p.str("key-id"),
			IncludeKeyMaterial: p.str("include-key-material"), Limit: limit, Marker: marker})
		if err != nil {
			return nil, "", false, err
		}
		var out []rotationEntry
		for _, x := range r.GetRotations() {
			out = append(out, rotationEntry{
				KeyID:            x.GetKeyId(),
				RotationDate:     tsOf(x.GetRotationDate()),
				RotationType:     x.GetRotationType(),
				KeyVersion:       x.GetKeyVersion(),
				KeyMaterialID:    x.GetKeyMaterialId(),
				KeyMaterialState: x.GetKeyMaterialState(),
			})
		}
		return out, r.GetNextMarker(), r.GetTruncated(), nil
	})
	if err != nil {
		return nil, err
	}
	return listKeyRotationsDoc{Rotations: items, paging: tail}, nil
}

// pager says how a list command pages.
type pager struct {
	manual   bool   // one call with limit and marker (--limit, --marker, --no-paginate)
	limit    int32  // --limit, or --page-size
	marker   string // --marker, or --starting-token
	maxItems int    // --max-items: stop automatic pagination after so many
}

func pagerOf(p *params) (pager, error) {
	var pg pager
	limit, err := p.int32("limit")
	if err != nil {
		return pg, err
	}
	pageSize, err := p.int32("page-size")
	if err != nil {
		return pg, err
	}
	maxItems, err := p.int32("max-items")
	if err != nil {
		return pg, err
	}
	pg.manual = p.has("limit") || p.has("marker") || p.global.noPaginate
	if pg.manual && (p.has("max-items") || p.has("page-size") || p.has("starting-token")) {
		return pg, usagef("--limit and --marker page by hand; they do not go with --max-items, --page-size or --starting-token")
	}
	pg.limit, pg.marker, pg.maxItems = limit, p.str("marker"), int(maxItems)
	if !pg.manual {
		pg.limit, pg.marker = pageSize, p.str("starting-token")
	}
	return pg, nil
}

// maxPage is the largest page the API serves (AWS's bound on Limit).
const maxPage = 1000

// collect runs a list call: once when paging by hand, otherwise page after
// page until the end or --max-items, as the AWS CLI's paginators do.
func collect[T any](pg pager, fetch func(marker string, limit int32) ([]T, string, bool, error)) ([]T, paging, error) {
	all := []T{}
	if pg.manual {
		items, next, truncated, err := fetch(pg.marker, pg.limit)
		if err != nil {
			return nil, paging{}, err
		}
		if !truncated {
			next = ""
		}
		// Paging by hand prints the raw answer, Truncated even when false,
		// as the AWS CLI does without pagination.
		return append(all, items...), paging{NextMarker: next, Truncated: &truncated}, nil
	}
	marker := pg.marker
	for {
		limit := pg.limit
		if pg.maxItems > 0 {
			remaining := min(pg.maxItems-len(all), maxPage)
			if limit == 0 || int32(remaining) < limit {
				limit = int32(remaining)
			}
		}
		items, next, truncated, err := fetch(marker, limit)
		if err != nil {
			return nil, paging{}, err
		}
		all = append(all, items...)
		if !truncated || next == "" || next == marker {
			return all, paging{}, nil
		}
		if pg.maxItems > 0 && len(all) >= pg.maxItems {
			return all, paging{NextToken: next}, nil
		}
		marker = next
	}
}
