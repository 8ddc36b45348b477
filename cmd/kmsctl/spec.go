package main

import (
	"fmt"
	"strings"
)

// flagKind says how a flag takes its value, as the AWS CLI does: a string
// or number takes the next argument, a list takes every argument up to the
// next flag, and a boolean takes none (--no-NAME turns it off).
type flagKind int

const (
	kindString flagKind = iota
	kindInt
	kindBool
	kindList
	kindDuration
	kindBlob // binary: base64 text, or fileb://PATH for raw bytes
	kindMap  // an object of strings: shorthand k=v,k2=v2 or JSON
)

// typeName is how help names a kind, in the AWS CLI's words.
func (k flagKind) typeName() string {
	switch k {
	case kindInt:
		return "integer"
	case kindBool:
		return "boolean"
	case kindList:
		return "list"
	case kindDuration:
		return "duration"
	case kindBlob:
		return "blob"
	case kindMap:
		return "map"
	}
	return "string"
}

// flagDef is everything kmsctl knows of a flag: how it parses, how it is
// checked, how --cli-input-json names it, and its help text. The parser,
// the help pages and the skeletons all read this one table, so they cannot
// drift apart.
type flagDef struct {
	kind    flagKind
	doc     string   // one or two sentences for help
	choices []string // allowed values; checked here only where noted (AWS leaves enums to the service)
	def     string   // what applies when the flag is absent, for help
	example string   // an example value, for help and skeletons
	param   string   // the request field in --cli-input-json; "" derives it (key-id → KeyId); "-" has none
	min     int64    // integers: the smallest value AWS's parameter validation accepts
	hasMin  bool
}

// paramName is the flag's field in --cli-input-json and skeletons.
func paramName(name string, d flagDef) string {
	if d.param != "" {
		return d.param
	}
	var b strings.Builder
	for _, w := range strings.Split(name, "-") {
		if w != "" {
			b.WriteString(strings.ToUpper(w[:1]) + w[1:])
		}
	}
	return b.String()
}

var (
	keySpecs = []string{"SYMMETRIC_DEFAULT", "RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384",
		"ECC_NIST_P521", "HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512"}
	dataKeySpecs   = []string{"AES_256", "AES_128"}
	encryptionAlgs = []string{"SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"}
	signingAlgs    = []string{"RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512", "RSASSA_PKCS1_V1_5_SHA_256",
		"RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512", "ECDSA_SHA_256", "ECDSA_SHA_384", "ECDSA_SHA_512"}
	macAlgs      = []string{"HMAC_SHA_224", "HMAC_SHA_256", "HMAC_SHA_384", "HMAC_SHA_512"}
	keyPairSpecs = []string{"RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521"}
	wrappingAlgs = []string{"RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1"}
)

const (
	exKeyID   = "1234abcd-12ab-34cd-56ef-1234567890ab"
	exContext = "purpose=backup,tenant=acme"
	exBlob    = "fileb://ciphertext.bin"
)

// flagCatalog is every command flag. A command lists the names it takes;
// "COMMAND/flag" entries override a flag's text for one command.
var flagCatalog = map[string]flagDef{
	"key-id": {doc: "The key: its ID, its ARN, an alias name (alias/NAME) or an alias ARN.", example: exKeyID},
	"decrypt/key-id": {doc: "The key the ciphertext must be under; optional, the ciphertext names its key. " +
		"Giving it makes decrypt fail rather than use another key.", example: exKeyID},
	"list-aliases/key-id": {doc: "List only the aliases of this key (ID or ARN).", example: exKeyID},
	"policy":              {doc: "The key policy, a JSON document; file://PATH reads it from a file.", example: "file://policy.json"},
	"description":         {doc: "A description of the key; file://PATH reads it from a file.", example: "backup key for the billing database", def: `""`},
	"key-usage": {doc: "What the key is for: ENCRYPT_DECRYPT (symmetric and RSA keys), SIGN_VERIFY (RSA and ECC keys) " +
		"or GENERATE_VERIFY_MAC (HMAC keys).", choices: []string{"ENCRYPT_DECRYPT", "SIGN_VERIFY", "GENERATE_VERIFY_MAC"},
		def: "ENCRYPT_DECRYPT; the only usage of ECC and HMAC keys", example: "SIGN_VERIFY"},
	"key-spec": {doc: "The kind of key.", choices: keySpecs, def: "SYMMETRIC_DEFAULT", example: "SYMMETRIC_DEFAULT"},
	"generate-data-key/key-spec": {doc: "The length of the data key; give it or --number-of-bytes.",
		choices: dataKeySpecs, example: "AES_256"},
	"generate-data-key-without-plaintext/key-spec": {doc: "The length of the data key; give it or --number-of-bytes.",
		choices: dataKeySpecs, example: "AES_256"},
	"customer-master-key-spec": {doc: "Old name of --key-spec, kept by AWS for old scripts.", choices: keySpecs, example: "SYMMETRIC_DEFAULT"},
	"origin": {doc: "Where the key material comes from: made by the cluster, or imported later (get-parameters-for-import).",
		choices: []string{"AWS_KMS", "EXTERNAL"}, def: "AWS_KMS", example: "EXTERNAL"},
	"tags": {kind: kindList, doc: "Tags, each TagKey=KEY,TagValue=VALUE, or one JSON list of {\"TagKey\", \"TagValue\"} objects.",
		example: "TagKey=team,TagValue=infra TagKey=env,TagValue=prod"},
	"bypass-policy-lockout-safety-check": {kind: kindBool, doc: "Accept a policy that would lock the caller out of the key.", def: "false", example: "true"},
	"managed": {kind: kindBool, doc: "Make a default managed key (origin SERVICE: rotated by the cluster, not by users); raftkms extension.",
		def: "false", example: "true", param: "Managed"},
	"grant-tokens": {kind: kindList, doc: "Grant tokens, as AWS takes them.", example: "token1 token2"},
	"limit": {kind: kindInt, doc: "The most items one call returns (1-1000). Giving it (or --marker) turns off automatic pagination: " +
		"one call is made and NextMarker and Truncated are printed.", min: 1, hasMin: true, example: "10"},
	"marker": {doc: "Where to go on: the NextMarker of the previous call. Turns off automatic pagination.", example: "eyJrIjoiYWJjIn0"},
	"max-items": {kind: kindInt, doc: "The most items to print in all; a NextToken is printed to go on with --starting-token.",
		min: 1, hasMin: true, param: "-", example: "100"},
	"page-size": {kind: kindInt, doc: "How many items each call of automatic pagination asks for (1-1000).",
		min: 1, hasMin: true, param: "-", def: "the server's page size", example: "50"},
	"starting-token": {doc: "The NextToken printed by an earlier --max-items run.", param: "-", example: "eyJrIjoiYWJjIn0"},
	"pending-window-in-days": {kind: kindInt, doc: "Days before the key is deleted (7-30 unless the cluster sets other bounds).",
		min: 1, hasMin: true, def: "30", example: "7"},
	"pending-window": {kind: kindDuration, doc: "The waiting period as a Go duration in whole seconds, for test clusters with short bounds; " +
		"raftkms extension, instead of --pending-window-in-days.", example: "30s", param: "PendingWindow"},
	"rotation-period-in-days": {kind: kindInt, doc: "Days between automatic rotations (90-2560 unless the cluster sets other bounds).",
		min: 1, hasMin: true, def: "365", example: "180"},
	"rotation-period": {kind: kindDuration, doc: "The rotation period as a Go duration in whole seconds, for test clusters with short bounds; " +
		"raftkms extension, instead of --rotation-period-in-days.", example: "2s", param: "RotationPeriod"},
	"plaintext": {kind: kindBlob, doc: "The data to encrypt, up to 4096 bytes: base64, or fileb://PATH for raw bytes " +
		"(with --cli-binary-format raw-in-base64-out, plain text).", example: "fileb://secret.txt"},
	"encryption-context": {kind: kindMap, doc: "Key/value pairs bound to the ciphertext: decrypt must give the same. " +
		"Shorthand k=v,k2=v2 or JSON {\"k\":\"v\"}.", example: exContext},
	"encryption-algorithm": {doc: "The encryption algorithm: SYMMETRIC_DEFAULT, or RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256 " +
		"(required) with an RSA key.", choices: encryptionAlgs, def: "SYMMETRIC_DEFAULT", example: "SYMMETRIC_DEFAULT"},
	"ciphertext-blob": {kind: kindBlob, doc: "The ciphertext: base64, or fileb://PATH for raw bytes.", example: exBlob},
	"source-encryption-context": {kind: kindMap, doc: "The encryption context the ciphertext was made with.",
		example: exContext},
	"source-key-id":      {doc: "The key the ciphertext must be under; optional, the ciphertext names its key.", example: exKeyID},
	"destination-key-id": {doc: "The key to encrypt under again: ID, ARN, alias name or alias ARN.", example: "alias/new-key"},
	"destination-encryption-context": {kind: kindMap, doc: "The encryption context of the new ciphertext.",
		example: "purpose=backup,tenant=acme,generation=2"},
	"source-encryption-algorithm":      {doc: "The algorithm of the ciphertext.", choices: encryptionAlgs[:1], def: "SYMMETRIC_DEFAULT", example: "SYMMETRIC_DEFAULT"},
	"destination-encryption-algorithm": {doc: "The algorithm of the new ciphertext.", choices: encryptionAlgs[:1], def: "SYMMETRIC_DEFAULT", example: "SYMMETRIC_DEFAULT"},
	"number-of-bytes": {kind: kindInt, doc: "The data key's length in bytes (1-1024); give it or --key-spec.",
		min: 1, hasMin: true, example: "32"},
	"wrapping-algorithm": {doc: "How the key material will be wrapped.", choices: wrappingAlgs, example: "RSAES_OAEP_SHA_256"},
	"wrapping-key-spec":  {doc: "The wrapping key's type.", choices: []string{"RSA_2048", "RSA_3072", "RSA_4096"}, example: "RSA_4096"},
	"output-dir": {doc: "Also write the public key and import token to WrappingPublicKey.bin and ImportToken.bin " +
		"in this directory (made if missing); raftkms extension.", param: "-", example: "./import"},
	"import-token":           {kind: kindBlob, doc: "The import token from get-parameters-for-import.", example: "fileb://ImportToken.bin"},
	"encrypted-key-material": {kind: kindBlob, doc: "The key material wrapped under the wrapping public key.", example: "fileb://EncryptedKeyMaterial.bin"},
	"valid-to":               {doc: "When the imported material expires: ISO 8601 or seconds since the epoch.", example: "2027-01-01T00:00:00Z"},
	"expiration-model": {doc: "Whether the material expires (then give --valid-to).",
		choices: []string{"KEY_MATERIAL_EXPIRES", "KEY_MATERIAL_DOES_NOT_EXPIRE"}, def: "KEY_MATERIAL_DOES_NOT_EXPIRE with no --valid-to", example: "KEY_MATERIAL_EXPIRES"},
	"import-type": {doc: "EXISTING_KEY_MATERIAL: the key's first material, or material it had before, again; " +
		"NEW_KEY_MATERIAL: new material, staged (PENDING_ROTATION) until rotate-key-on-demand makes it current.",
		choices: []string{"EXISTING_KEY_MATERIAL", "NEW_KEY_MATERIAL"}, def: "EXISTING_KEY_MATERIAL", example: "NEW_KEY_MATERIAL"},
	"include-key-material": {doc: "ALL_KEY_MATERIAL also lists the first material and imported material pending rotation.",
		choices: []string{"ALL_KEY_MATERIAL", "ROTATIONS_ONLY"}, def: "ROTATIONS_ONLY", example: "ALL_KEY_MATERIAL"},
	"alias-name":    {doc: "The alias, alias/NAME.", example: "alias/billing"},
	"target-key-id": {doc: "The key the alias points at: its ID or ARN.", example: exKeyID},
	"tag-keys":      {kind: kindList, doc: "The keys of the tags to remove, or one JSON list of strings.", example: "team env"},
	"policy-name":   {doc: "The policy's name; keys have one policy.", choices: []string{"default"}, def: "default", example: "default"},
	"node-id":       {doc: "The node's ID (its Raft server ID).", example: "kms4"},
	"raft-addr":     {doc: "The node's Raft address, HOST:PORT.", example: "10.0.0.4:7101"},
	"grpc-addr":     {doc: "The node's gRPC address, HOST:PORT.", example: "10.0.0.4:7001"},
	"target-node-id": {doc: "The node to hand leadership to.", def: "the voter the leader finds most up to date",
		example: "kms2"},

	// Grants and version controls (commands_grants.go).
	"grantee-principal":             {doc: "The identity the grant is for (a certificate or access-key identity).", example: "app"},
	"retiring-principal":            {doc: "The identity that may retire the grant.", example: "ops"},
	"list-grants/grantee-principal": {doc: "List only the grants for this identity.", example: "app"},
	"operations": {kind: kindList, doc: "The operations the grant gives: Decrypt, Encrypt, GenerateDataKey, " +
		"GenerateDataKeyWithoutPlaintext, ReEncryptFrom, ReEncryptTo, Sign, Verify, GetPublicKey, CreateGrant, RetireGrant, " +
		"DescribeKey, GenerateDataKeyPair, GenerateDataKeyPairWithoutPlaintext, GenerateMac, VerifyMac.",
		example: "Encrypt Decrypt"},
	"constraints": {doc: "Limit the grant to requests whose encryption context contains (EncryptionContextSubset) or is " +
		"exactly (EncryptionContextEquals) the given pairs: JSON, or the shorthand EncryptionContextSubset={k=v,k2=v2}.",
		example: "EncryptionContextSubset={tenant=acme}"},
	"name":        {doc: "A name for the grant: the same name with the same parameters returns the same grant.", example: "backup-job"},
	"grant-id":    {doc: "The grant's ID, as create-grant printed it.", example: "0c237476b39f8bc44e45212e08498fbe3151305030726c0590dd8d3e9f3d6a60"},
	"grant-token": {doc: "The grant's token, as create-grant printed it.", example: "rkg1.AbCd..."},
	"dry-run": {kind: kindBool, doc: "Check that the call would succeed (DryRunOperationException) without doing it.",
		def: "false", example: "true"},
	"generate-random/number-of-bytes": {kind: kindInt, doc: "How many random bytes (1-1024).", min: 1, hasMin: true, example: "32"},
	"max-decryption-versions": {kind: kindInt, doc: "At most this many key versions stay available for decryption; after a " +
		"rotation the oldest beyond it are retired automatically (they no longer decrypt; nothing is destroyed). 0 or absent: " +
		"unlimited. raftkms extension.", min: 0, hasMin: true, example: "3"},
	"min-decryption-version": {kind: kindInt, doc: "The oldest key version that may decrypt; 1 allows all. It may be lowered " +
		"again as long as the versions it re-admits are not destroyed; raftkms extension.", min: 1, hasMin: true, example: "3"},
	"key-version": {kind: kindInt, doc: "The key version to destroy; never the current one. raftkms extension.",
		min: 1, hasMin: true, example: "2"},

	// Asymmetric and HMAC keys (commands_asym.go).
	"message": {kind: kindBlob, doc: "The message, up to 4096 bytes, or its digest with --message-type DIGEST: " +
		"base64, or fileb://PATH for raw bytes.", example: "fileb://message.txt"},
	"message-type": {doc: "Whether --message is the message (RAW) or its digest (DIGEST), as long as the algorithm's hash.",
		choices: []string{"RAW", "DIGEST"}, def: "RAW", example: "DIGEST"},
	"signing-algorithm": {doc: "The signing algorithm; RSA keys take the RSASSA ones, an ECC key the ECDSA one of its curve.",
		choices: signingAlgs, example: "ECDSA_SHA_256"},
	"signature":     {kind: kindBlob, doc: "The signature to check: base64, or fileb://PATH for raw bytes.", example: "fileb://signature.bin"},
	"mac-algorithm": {doc: "The MAC algorithm: the HMAC_SHA_* of the key's spec.", choices: macAlgs, example: "HMAC_SHA_256"},
	"mac":           {kind: kindBlob, doc: "The MAC to check: base64, or fileb://PATH for raw bytes.", example: "fileb://mac.bin"},
	"key-pair-spec": {doc: "The kind of data key pair.", choices: keyPairSpecs, example: "ECC_NIST_P256"},
	"generate-data-key-pair/key-id": {doc: "The symmetric key that encrypts the private key: ID, ARN, alias name or alias ARN.",
		example: exKeyID},
	"generate-data-key-pair-without-plaintext/key-id": {doc: "The symmetric key that encrypts the private key: ID, ARN, " +
		"alias name or alias ARN.", example: exKeyID},
}

// flagSpec is one flag of one command.
type flagSpec struct {
	name     string
	required bool
	flagDef
}

// parseFlagSpecs reads a command's flags from the names in its
// registration ("key-id! limit": a "!" marks a required flag). Every name
// must be in flagCatalog: a command cannot have a flag without help.
func parseFlagSpecs(cmd, s string) []flagSpec {
	var out []flagSpec
	for _, f := range strings.Fields(s) {
		name, required := strings.CutSuffix(f, "!")
		d, ok := flagCatalog[cmd+"/"+name]
		if !ok {
			d, ok = flagCatalog[name]
		}
		if !ok {
			panic(fmt.Sprintf("kmsctl: flag --%s of %s has no entry in flagCatalog", name, cmd))
		}
		out = append(out, flagSpec{name: name, required: required, flagDef: d})
	}
	return out
}
