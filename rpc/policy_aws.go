package rpc

import (
	"encoding/json"
	"fmt"
	"strings"
)

// awsPrincipals reads a key policy's "Principal": {"AWS": ...} as AWS-style
// policies write it, naming the same identities as {"Identity": ...}: a
// plain name ("app"), an IAM user or role ARN whose last path segment is the
// name ("arn:aws:iam::111122223333:user/app"), "*" or the account's root
// ("arn:aws:iam::111122223333:root"), which in AWS stands for every
// principal of the account and here for every authenticated identity.
func awsPrincipals(raw json.RawMessage) ([]string, error) {
	list, err := stringOrList(raw)
	if err != nil || len(list) == 0 {
		return nil, fmt.Errorf("want a string or a list of strings")
	}
	out := make([]string, 0, len(list))
	for _, p := range list {
		name, err := awsPrincipal(p)
		if err != nil {
			return nil, err
		}
		out = append(out, name)
	}
	return out, nil
}

func awsPrincipal(p string) (string, error) {
	if !strings.HasPrefix(p, "arn:") {
		if p == "" {
			return "", fmt.Errorf("an empty principal")
		}
		return p, nil
	}
	// arn:PARTITION:iam::ACCOUNT:RESOURCE
	parts := strings.SplitN(p, ":", 6)
	if len(parts) != 6 || parts[2] != "iam" || parts[5] == "" {
		return "", fmt.Errorf("%q is not an IAM ARN (arn:aws:iam::ACCOUNT:user/NAME)", p)
	}
	res := parts[5]
	if res == "root" {
		return "*", nil
	}
	kind, path, ok := strings.Cut(res, "/")
	if !ok || (kind != "user" && kind != "role") || path == "" || strings.HasSuffix(path, "/") {
		return "", fmt.Errorf("%q names no user or role (arn:aws:iam::ACCOUNT:user/NAME)", p)
	}
	return path[strings.LastIndex(path, "/")+1:], nil
}
