package main

import (
	"time"

	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
)

// Access keys for the AWS-protocol front, printed as `aws iam
// create-access-key` / `list-access-keys` print theirs: the identity is the
// UserName.

// accessKeyDoc is one access key; the secret only in create-access-key's answer.
type accessKeyDoc struct {
	UserName        string   `json:"UserName"`
	AccessKeyId     string   `json:"AccessKeyId"`
	Status          string   `json:"Status"`
	SecretAccessKey string   `json:"SecretAccessKey,omitempty"`
	CreateDate      *awsTime `json:"CreateDate,omitempty"`
}

func accessKeyOf(k *clusterv1.AccessKey) accessKeyDoc {
	d := accessKeyDoc{UserName: k.GetIdentity(), AccessKeyId: k.GetAccessKeyId(), Status: k.GetStatus(),
		SecretAccessKey: k.GetSecretAccessKey()}
	if k.GetCreateUnixNano() != 0 {
		t := awsTime(time.Unix(0, k.GetCreateUnixNano()))
		d.CreateDate = &t
	}
	return d
}

func init() {
	flagCatalog["identity"] = flagDef{doc: "The identity the access key signs as: the principal of the calls it signs, " +
		"as a certificate identity is (key policies name it).", example: "app"}
	flagCatalog["list-access-keys/identity"] = flagDef{doc: "List only this identity's access keys.", def: "every identity", example: "app"}
	flagCatalog["access-key-id"] = flagDef{doc: "The access key, AKIA followed by 16 characters.", example: "AKIAZ7QDKQ3HXW5MNB2Y"}
	register("create-access-key", "Creates an access key (for the AWS-protocol front) for an identity; the secret is shown only now.",
		"identity!", func(e *env, p *params) (any, error) {
			r, err := e.cluster().CreateAccessKey(e.ctx, &clusterv1.CreateAccessKeyRequest{Identity: p.str("identity")})
			if err != nil {
				return nil, err
			}
			return struct {
				AccessKey accessKeyDoc `json:"AccessKey"`
			}{accessKeyOf(r.GetAccessKey())}, nil
		})
	register("list-access-keys", "Lists access keys (never their secrets), of one identity with --identity.",
		"identity", func(e *env, p *params) (any, error) {
			r, err := e.cluster().ListAccessKeys(e.ctx, &clusterv1.ListAccessKeysRequest{Identity: p.str("identity")})
			if err != nil {
				return nil, err
			}
			out := struct {
				AccessKeyMetadata []accessKeyDoc `json:"AccessKeyMetadata"`
			}{AccessKeyMetadata: []accessKeyDoc{}}
			for _, k := range r.GetAccessKeys() {
				out.AccessKeyMetadata = append(out.AccessKeyMetadata, accessKeyOf(k))
			}
			return out, nil
		})
	register("delete-access-key", "Deletes an access key; requests signed with it are refused.",
		"access-key-id!", func(e *env, p *params) (any, error) {
			_, err := e.cluster().DeleteAccessKey(e.ctx, &clusterv1.DeleteAccessKeyRequest{AccessKeyId: p.str("access-key-id")})
			return nil, err
		})
}
