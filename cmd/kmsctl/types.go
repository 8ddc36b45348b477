package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The types below are the JSON documents kmsctl prints: AWS response shapes
// with AWS field names, in AWS field order, omitting what AWS omits. Fields
// tagged ext:"raftkms" have no AWS counterpart: JSON and YAML print them,
// text and table output leave them out so that their columns are AWS's. Byte slices print as
// base64, as the AWS CLI prints blobs.

// outputLocation is the zone timestamps are printed in: the local one, as
// the AWS CLI does (TZ=UTC gives +00:00). Tests fix it.
var outputLocation = time.Local

// awsTime prints a timestamp as the AWS CLI v2 does (Python's isoformat):
// 2026-11-22T10:15:31.123000+00:00, without a fraction when it is zero.
type awsTime time.Time

func (t awsTime) String() string {
	tt := time.Time(t).In(outputLocation)
	s := tt.Format("2006-01-02T15:04:05")
	if us := tt.Nanosecond() / 1000; us != 0 {
		s += fmt.Sprintf(".%06d", us)
	}
	return s + tt.Format("-07:00")
}

func (t awsTime) MarshalJSON() ([]byte, error) { return json.Marshal(t.String()) }

// tsOf is a proto timestamp as an awsTime, nil when unset.
func tsOf(ts *timestamppb.Timestamp) *awsTime {
	if ts == nil {
		return nil
	}
	t := awsTime(ts.AsTime())
	return &t
}

type keyMetadataOut struct {
	AWSAccountID                string   `json:"AWSAccountId"`
	KeyID                       string   `json:"KeyId"`
	Arn                         string   `json:"Arn"`
	CreationDate                *awsTime `json:"CreationDate,omitempty"`
	Enabled                     bool     `json:"Enabled"`
	Description                 string   `json:"Description"`
	KeyUsage                    string   `json:"KeyUsage,omitempty"`
	KeyState                    string   `json:"KeyState"`
	DeletionDate                *awsTime `json:"DeletionDate,omitempty"`
	ValidTo                     *awsTime `json:"ValidTo,omitempty"`
	Origin                      string   `json:"Origin,omitempty"`
	ExpirationModel             string   `json:"ExpirationModel,omitempty"`
	KeyManager                  string   `json:"KeyManager,omitempty"`
	CustomerMasterKeySpec       string   `json:"CustomerMasterKeySpec,omitempty"`
	KeySpec                     string   `json:"KeySpec,omitempty"`
	EncryptionAlgorithms        []string `json:"EncryptionAlgorithms,omitempty"`
	SigningAlgorithms           []string `json:"SigningAlgorithms,omitempty"`
	MacAlgorithms               []string `json:"MacAlgorithms,omitempty"`
	MultiRegion                 bool     `json:"MultiRegion"`
	PendingDeletionWindowInDays int32    `json:"PendingDeletionWindowInDays,omitempty"`
	CurrentKeyMaterialID        string   `json:"CurrentKeyMaterialId,omitempty"`
	CurrentKeyVersion           uint32   `json:"CurrentKeyVersion,omitempty" ext:"raftkms"`
}

// keyMetadataDoc is the answer of create-key and describe-key.
type keyMetadataDoc struct {
	KeyMetadata keyMetadataOut `json:"KeyMetadata"`
}

func keyMetadataOf(m *kmsv1.KeyMetadata) keyMetadataDoc {
	return keyMetadataDoc{keyMetadataOut{
		AWSAccountID:                m.GetAwsAccountId(),
		KeyID:                       m.GetKeyId(),
		Arn:                         m.GetArn(),
		CreationDate:                tsOf(m.GetCreationDate()),
		Enabled:                     m.GetEnabled(),
		Description:                 m.GetDescription(),
		KeyUsage:                    m.GetKeyUsage(),
		KeyState:                    m.GetKeyState(),
		DeletionDate:                tsOf(m.GetDeletionDate()),
		ValidTo:                     tsOf(m.GetValidTo()),
		Origin:                      m.GetOrigin(),
		ExpirationModel:             m.GetExpirationModel(),
		KeyManager:                  m.GetKeyManager(),
		CustomerMasterKeySpec:       m.GetCustomerMasterKeySpec(),
		KeySpec:                     m.GetKeySpec(),
		EncryptionAlgorithms:        m.GetEncryptionAlgorithms(),
		SigningAlgorithms:           m.GetSigningAlgorithms(),
		MacAlgorithms:               m.GetMacAlgorithms(),
		PendingDeletionWindowInDays: m.GetPendingDeletionWindowInDays(),
		CurrentKeyMaterialID:        m.GetCurrentKeyMaterialId(),
		CurrentKeyVersion:           m.GetCurrentKeyVersion(),
	}}
}

// paging is the tail of a list answer: Truncated (and NextMarker when it
// is true) when the caller pages by hand (--limit, --marker, --no-paginate);
// NextToken when --max-items stopped auto-pagination early.
type paging struct {
	NextMarker string `json:"NextMarker,omitempty"`
	Truncated  *bool  `json:"Truncated,omitempty"`
	NextToken  string `json:"NextToken,omitempty"`
}

type keyListEntry struct {
	KeyID  string `json:"KeyId"`
	KeyArn string `json:"KeyArn"`
}

type listKeysDoc struct {
	Keys []keyListEntry `json:"Keys"`
	paging
}

type scheduleKeyDeletionDoc struct {
	KeyID               string   `json:"KeyId"`
	DeletionDate        *awsTime `json:"DeletionDate,omitempty"`
	KeyState            string   `json:"KeyState,omitempty"`
	PendingWindowInDays int32    `json:"PendingWindowInDays,omitempty"`
}

type keyIDDoc struct {
	KeyID string `json:"KeyId"`
}

type rotationStatusDoc struct {
	KeyRotationEnabled        bool     `json:"KeyRotationEnabled"`
	KeyID                     string   `json:"KeyId,omitempty"`
	RotationPeriodInDays      int32    `json:"RotationPeriodInDays,omitempty"`
	NextRotationDate          *awsTime `json:"NextRotationDate,omitempty"`
	OnDemandRotationStartDate *awsTime `json:"OnDemandRotationStartDate,omitempty"`
	RotationPeriodSeconds     int64    `json:"RotationPeriodSeconds,omitempty" ext:"raftkms"`
	MaxDecryptionVersions     uint32   `json:"MaxDecryptionVersions,omitempty" ext:"raftkms"`
}

type keyVersionDoc struct {
	KeyID      string `json:"KeyId"`
	KeyVersion uint32 `json:"KeyVersion,omitempty" ext:"raftkms"`
}

// importKeyMaterialDoc is the answer of import-key-material.
type importKeyMaterialDoc struct {
	KeyID         string `json:"KeyId"`
	KeyMaterialID string `json:"KeyMaterialId,omitempty"`
	KeyVersion    uint32 `json:"KeyVersion,omitempty" ext:"raftkms"`
}

type rotationEntry struct {
	KeyID            string   `json:"KeyId"`
	RotationDate     *awsTime `json:"RotationDate,omitempty"`
	RotationType     string   `json:"RotationType,omitempty"`
	KeyVersion       uint32   `json:"KeyVersion,omitempty" ext:"raftkms"`
	KeyMaterialID    string   `json:"KeyMaterialId,omitempty"`
	KeyMaterialState string   `json:"KeyMaterialState,omitempty"`
}

type listKeyRotationsDoc struct {
	Rotations []rotationEntry `json:"Rotations"`
	paging
}

type encryptDoc struct {
	CiphertextBlob      []byte `json:"CiphertextBlob"`
	KeyID               string `json:"KeyId"`
	EncryptionAlgorithm string `json:"EncryptionAlgorithm,omitempty"`
}

type decryptDoc struct {
	KeyID               string `json:"KeyId"`
	Plaintext           []byte `json:"Plaintext"`
	EncryptionAlgorithm string `json:"EncryptionAlgorithm,omitempty"`
}

type reEncryptDoc struct {
	CiphertextBlob                 []byte `json:"CiphertextBlob"`
	SourceKeyID                    string `json:"SourceKeyId"`
	KeyID                          string `json:"KeyId"`
	SourceEncryptionAlgorithm      string `json:"SourceEncryptionAlgorithm,omitempty"`
	DestinationEncryptionAlgorithm string `json:"DestinationEncryptionAlgorithm,omitempty"`
}

type dataKeyDoc struct {
	CiphertextBlob []byte `json:"CiphertextBlob"`
	Plaintext      []byte `json:"Plaintext"`
	KeyID          string `json:"KeyId"`
}

type dataKeyWithoutPlaintextDoc struct {
	CiphertextBlob []byte `json:"CiphertextBlob"`
	KeyID          string `json:"KeyId"`
}

type aliasEntry struct {
	AliasName       string   `json:"AliasName"`
	AliasArn        string   `json:"AliasArn"`
	TargetKeyID     string   `json:"TargetKeyId,omitempty"`
	CreationDate    *awsTime `json:"CreationDate,omitempty"`
	LastUpdatedDate *awsTime `json:"LastUpdatedDate,omitempty"`
}

type listAliasesDoc struct {
	Aliases []aliasEntry `json:"Aliases"`
	paging
}

type importParametersDoc struct {
	KeyID             string   `json:"KeyId"`
	ImportToken       []byte   `json:"ImportToken"`
	PublicKey         []byte   `json:"PublicKey"`
	ParametersValidTo *awsTime `json:"ParametersValidTo,omitempty"`
}

type keyPolicyDoc struct {
	Policy     string `json:"Policy"`
	PolicyName string `json:"PolicyName,omitempty"`
}

type tagEntry struct {
	TagKey   string `json:"TagKey"`
	TagValue string `json:"TagValue"`
}

type listResourceTagsDoc struct {
	Tags []tagEntry `json:"Tags"`
	paging
}

// keyEventEntry is one event of a key's hash-chained history (raftkms
// extension); Hash is hex, as digests usually are.
type keyEventEntry struct {
	EventType  string   `json:"EventType"`
	Time       *awsTime `json:"Time,omitempty"`
	Principal  string   `json:"Principal,omitempty"`
	RequestID  string   `json:"RequestId,omitempty"`
	KeyState   string   `json:"KeyState,omitempty"`
	KeyVersion uint32   `json:"KeyVersion,omitempty"`
	Hash       string   `json:"Hash"`
}

type listKeyEventsDoc struct {
	KeyID  string          `json:"KeyId"`
	Events []keyEventEntry `json:"Events"`
	paging
}

type memberEntry struct {
	NodeID   string `json:"NodeId"`
	RaftAddr string `json:"RaftAddr"`
	GrpcAddr string `json:"GrpcAddr"`
	Voter    bool   `json:"Voter"`
}

// clusterStatusDoc is the answer of `kmsctl cluster status` (DESIGN §9).
type clusterStatusDoc struct {
	NodeID         string        `json:"NodeId"`
	State          string        `json:"State"`
	LeaderID       string        `json:"LeaderId"`
	LeaderGrpcAddr string        `json:"LeaderGrpcAddr,omitempty"`
	AppliedIndex   uint64        `json:"AppliedIndex"`
	StateDigest    string        `json:"StateDigest"`
	Term           uint64        `json:"Term"`
	LastIndex      uint64        `json:"LastIndex"`
	Members        []memberEntry `json:"Members"`
	// The newest event schema the node understands, and the one it writes
	// at as leader (the lowest its members announced); rolling upgrades.
	MaxSchemaVersion     uint32 `json:"MaxSchemaVersion,omitempty"`
	ClusterSchemaVersion uint32 `json:"ClusterSchemaVersion,omitempty"`
	// The root key the cluster records, how many sealed blobs are under
	// each root key (a key with none may leave the root key file once the
	// cluster records another), and the target of a rotation in progress.
	ClusterRootKeyID    string         `json:"ClusterRootKeyId,omitempty"`
	SealedByRootKey     []rootKeyUsage `json:"SealedByRootKey,omitempty"`
	RotatingToRootKeyID string         `json:"RotatingToRootKeyId,omitempty"`
}

type rootKeyUsage struct {
	RootKeyID   string `json:"RootKeyId"` // "" for blobs of the first seal format, which name no key
	SealedCount uint64 `json:"SealedCount"`
}

// rotateRootKeyDoc is the answer of `kmsctl cluster rotate-root-key`.
type rotateRootKeyDoc struct {
	TargetRootKeyID string `json:"TargetRootKeyId"`
	Remaining       uint64 `json:"Remaining"`
}

func clusterStatusOf(r *clusterv1.StatusResponse) clusterStatusDoc {
	d := clusterStatusDoc{
		NodeID:         r.GetNodeId(),
		State:          r.GetState(),
		LeaderID:       r.GetLeaderId(),
		LeaderGrpcAddr: r.GetLeaderGrpcAddr(),
		AppliedIndex:   r.GetAppliedIndex(),
		StateDigest:    hex.EncodeToString(r.GetStateDigest()),
		Term:           r.GetTerm(),
		LastIndex:      r.GetLastIndex(),
		Members:        []memberEntry{},

		MaxSchemaVersion:     r.GetMaxSchemaVersion(),
		ClusterSchemaVersion: r.GetClusterSchemaVersion(),
		ClusterRootKeyID:     r.GetClusterRootKeyId(),
		RotatingToRootKeyID:  r.GetRotatingToRootKeyId(),
	}
	for _, u := range r.GetSealedByRootKey() {
		d.SealedByRootKey = append(d.SealedByRootKey, rootKeyUsage{RootKeyID: u.GetRootKeyId(), SealedCount: u.GetSealedCount()})
	}
	for _, m := range r.GetMembers() {
		d.Members = append(d.Members, memberEntry{NodeID: m.GetNodeId(), RaftAddr: m.GetRaftAddr(), GrpcAddr: m.GetGrpcAddr(), Voter: m.GetVoter()})
	}
	return d
}

type snapshotDoc struct {
	Index uint64 `json:"Index"`
}
