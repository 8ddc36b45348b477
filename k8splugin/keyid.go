package k8splugin

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// maxKeyIDLen is the KMS v2 API's bound on a key_id: less than 1 kB.
const maxKeyIDLen = 1024

// KeyID is the key_id the plugin reports to kube-apiserver for a key and
// its current version: the key ARN, a slash, the version number
// ("arn:raftkms:kms:local:000000000000:key/UUID/3"). The apiserver compares
// the key_id of Status with the one each DEK was wrapped under, and wraps
// new DEKs when they differ; so it must change exactly when the key's
// current version changes, by an automatic rotation, an on-demand one, an
// import of new material, or an alias moved to another key.
func KeyID(arn string, version uint32) (string, error) {
	if arn == "" || version == 0 {
		return "", fmt.Errorf("k8splugin: a key_id needs a key ARN and a version (got %q, %d)", arn, version)
	}
	id := arn + "/" + strconv.FormatUint(uint64(version), 10)
	if len(id) >= maxKeyIDLen {
		return "", fmt.Errorf("k8splugin: key_id of %d bytes exceeds the KMS v2 limit of 1 kB", len(id))
	}
	return id, nil
}

// ParseKeyID splits a key_id made by KeyID into the key's ID (the UUID that
// ciphertext headers carry) and the version. It looks only at the last two
// path segments, so a key_id stays valid if the cluster's ARN prefix
// (account, region) changes.
func ParseKeyID(id string) (keyID string, version uint32, err error) {
	if id == "" {
		return "", 0, errors.New("k8splugin: key_id is empty")
	}
	rest, v, ok := cutLast(id, "/")
	if !ok {
		return "", 0, fmt.Errorf("k8splugin: key_id %q is not KEY_ARN/VERSION", id)
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n == 0 {
		return "", 0, fmt.Errorf("k8splugin: key_id %q does not end in a key version", id)
	}
	_, key, ok := cutLast(rest, "/")
	if !ok || key == "" || !strings.HasSuffix(strings.TrimSuffix(rest, key), "key/") {
		return "", 0, fmt.Errorf("k8splugin: key_id %q does not name a key ARN (…:key/ID/VERSION)", id)
	}
	return key, uint32(n), nil
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}
