package rpc

import (
	"context"
	"strings"
	"unicode"

	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/keycrypto"
	"github.com/raftkms/raftkms/pki"
	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	"google.golang.org/grpc/codes"
)

// Access keys of the AWS-protocol front are replicated state: an admin
// creates one for an identity, every node verifies SigV4 signatures with it,
// and the identity is then the principal of the call, as a certificate's is.
// The secret is chosen here, sealed under the root key before it is
// proposed, and returned once; the log, snapshots and state hold only the
// sealed form.

// maxIdentity bounds an access key's identity name.
const maxIdentity = 256

// checkAccessKeyIdentity refuses names that could not be a principal: empty,
// too long, with spaces or control characters, or a node's identity (nodes
// never speak through the AWS front).
func checkAccessKeyIdentity(id string) error {
	if id == "" || len(id) > maxIdentity {
		return validationErr("Identity must be 1 to %d characters", maxIdentity)
	}
	if strings.IndexFunc(id, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
		return validationErr("Identity must not contain spaces or control characters")
	}
	if pki.IsNodeIdentity(id) || id == "*" {
		return validationErr("Identity %q is reserved", id)
	}
	return nil
}

func accessKeyOf(k *fsm.AccessKey) *clusterv1.AccessKey {
	return &clusterv1.AccessKey{AccessKeyId: k.ID, Identity: k.Identity, Status: "Active", CreateUnixNano: k.CreatedAt}
}

// CreateAccessKey makes an access key for an identity; the answer is the
// only place its secret is ever shown.
func (s clusterService) CreateAccessKey(ctx context.Context, req *clusterv1.CreateAccessKeyRequest) (*clusterv1.CreateAccessKeyResponse, error) {
	if err := checkAccessKeyIdentity(req.GetIdentity()); err != nil {
		return nil, err
	}
	// A call with a request ID (every call the client library and kmsctl
	// make) gets the access key derived from that ID, so a retry of it
	// proposes the same key and can answer with the same secret.
	var id, secret string
	if rid := requestID(ctx); rid != "" {
		id, secret = s.root.AccessKeyFor(s.principal(ctx) + "\x00" + rid)
	} else {
		var err error
		if id, secret, err = keycrypto.NewAccessKey(s.rand); err != nil {
			return nil, internalErr("no randomness for an access key")
		}
	}
	sealed, err := s.root.SealAccessKeySecret(id, req.GetIdentity(), []byte(secret))
	if err != nil {
		return nil, internalErr("the access key could not be sealed")
	}
	res, err := s.propose(ctx, &eventsv1.Envelope{Event: &eventsv1.Envelope_CreateAccessKey{CreateAccessKey: &eventsv1.CreateAccessKey{
		AccessKeyId: id, Identity: req.GetIdentity(), SealedSecret: sealed}}})
	if err != nil {
		return nil, err
	}
	k, ok := s.fsm.AccessKey(id)
	if !ok && res.Duplicate {
		// A retry of a call that already made an access key: that key's
		// secret was in the first answer and is not kept anywhere unsealed.
		return nil, &apiError{code: codes.AlreadyExists, name: "AlreadyExistsException",
			msg: "this request already created an access key, whose secret was shown once; list the identity's keys, delete it and create another"}
	}
	if !ok {
		return nil, internalErr("the new access key is not in the state")
	}
	out := accessKeyOf(k)
	out.SecretAccessKey = secret
	return &clusterv1.CreateAccessKeyResponse{AccessKey: out}, nil
}

// ListAccessKeys lists access keys, never their secrets.
func (s clusterService) ListAccessKeys(ctx context.Context, req *clusterv1.ListAccessKeysRequest) (*clusterv1.ListAccessKeysResponse, error) {
	if err := s.readBarrier(ctx); err != nil {
		return nil, err
	}
	resp := &clusterv1.ListAccessKeysResponse{}
	for _, k := range s.fsm.AccessKeys(req.GetIdentity()) {
		resp.AccessKeys = append(resp.AccessKeys, accessKeyOf(k))
	}
	return resp, nil
}

// DeleteAccessKey removes an access key; requests signed with it are
// refused from then on.
func (s clusterService) DeleteAccessKey(ctx context.Context, req *clusterv1.DeleteAccessKeyRequest) (*clusterv1.DeleteAccessKeyResponse, error) {
	if !keycrypto.ValidAccessKeyID(req.GetAccessKeyId()) {
		return nil, validationErr("AccessKeyId must be a 20-character access key ID")
	}
	_, err := s.propose(ctx, &eventsv1.Envelope{Event: &eventsv1.Envelope_DeleteAccessKey{DeleteAccessKey: &eventsv1.DeleteAccessKey{
		AccessKeyId: req.GetAccessKeyId()}}})
	if err != nil {
		return nil, err
	}
	return &clusterv1.DeleteAccessKeyResponse{}, nil
}

// LookupAccessKey gives the AWS-protocol front the identity and secret of an
// access key, from this node's applied state. An access key this node does
// not know yet may have just been created elsewhere: the node then catches
// up with the leader (a read-index round) and looks again, so a key works on
// every node as soon as its creation is acknowledged. The secret is opened
// for the caller to check one signature; it is never logged.
func (s *Server) LookupAccessKey(ctx context.Context, accessKeyID string) (identity, secret string, ok bool, err error) {
	if ln, ok := s.node.(leaseNode); ok && s.readMode == ReadModeLease {
		// Under a lease, first apply any appended change of access keys
		// (a deletion acknowledged before this request is in the log).
		if leased, err := ln.LeaseRead(ctx); err != nil {
			return "", "", false, err
		} else if leased {
			if err := ln.WaitPending(ctx, ""); err != nil {
				return "", "", false, err
			}
		}
	}
	k, found := s.fsm.AccessKey(accessKeyID)
	if !found {
		if !keycrypto.ValidAccessKeyID(accessKeyID) {
			return "", "", false, nil
		}
		if err := s.readBarrier(ctx); err != nil {
			return "", "", false, err
		}
		if k, found = s.fsm.AccessKey(accessKeyID); !found {
			return "", "", false, nil
		}
	}
	plain, err := s.root.OpenAccessKeySecret(k.ID, k.Identity, k.SealedSecret)
	if err != nil {
		return "", "", false, internalErr("the secret of access key %s does not open under this node's root key", k.ID)
	}
	return k.Identity, string(plain), true, nil
}
