package rpc

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/raftkms/raftkms/keycrypto"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/grpc/codes"
)

// Request limits, AWS KMS's own.
const (
	maxTagsPerRequest = 50        // tags in one CreateKey or TagResource (the fsm keeps 50 per key)
	maxTagKey         = 128       // characters
	maxTagValue       = 256       // characters
	reservedTagPrefix = "aws:"    // tag keys AWS reserves for itself
	maxContextBytes   = 8192      // canonical size of one encryption context
	maxPolicyBytes    = 32 * 1024 // one key policy document
)

func tagErr(format string, args ...any) error {
	return &apiError{code: codes.InvalidArgument, name: "TagException", msg: fmt.Sprintf(format, args...)}
}

// checkTagKey applies AWS's rules to one tag key. As in AWS KMS, a length
// out of bounds is a ValidationException (a parameter constraint), a
// reserved or repeated key a TagException.
func checkTagKey(k string) error {
	switch n := utf8.RuneCountInString(k); {
	case n == 0:
		return validationErr("TagKey is required")
	case n > maxTagKey:
		return validationErr("TagKey is %d characters long; at most %d are allowed", n, maxTagKey)
	case len(k) >= len(reservedTagPrefix) && strings.EqualFold(k[:len(reservedTagPrefix)], reservedTagPrefix):
		return tagErr("tag keys beginning with %s are reserved", reservedTagPrefix)
	}
	return nil
}

// checkTags validates the tags of one request and converts them to events:
// at most 50, each key 1–128 characters, unique, not aws:..., each value at
// most 256 characters.
func checkTags(tags []*kmsv1.Tag) ([]*eventsv1.Tag, error) {
	if len(tags) > maxTagsPerRequest {
		return nil, tagErr("%d tags given; at most %d are allowed", len(tags), maxTagsPerRequest)
	}
	seen := make(map[string]bool, len(tags))
	out := make([]*eventsv1.Tag, 0, len(tags))
	for _, t := range tags {
		if err := checkTagKey(t.TagKey); err != nil {
			return nil, err
		}
		if n := utf8.RuneCountInString(t.TagValue); n > maxTagValue {
			return nil, validationErr("the value of tag %s is %d characters long; at most %d are allowed", t.TagKey, n, maxTagValue)
		}
		if seen[t.TagKey] {
			return nil, tagErr("tag key %s is given more than once", t.TagKey)
		}
		seen[t.TagKey] = true
		out = append(out, &eventsv1.Tag{Key: t.TagKey, Value: t.TagValue})
	}
	return out, nil
}

// checkTagKeys validates the tag keys of an UntagResource request.
func checkTagKeys(keys []string) error {
	if len(keys) > maxTagsPerRequest {
		return tagErr("%d tag keys given; at most %d are allowed", len(keys), maxTagsPerRequest)
	}
	for _, k := range keys {
		if err := checkTagKey(k); err != nil {
			return err
		}
	}
	return nil
}

// checkContext applies AWS's limits to an encryption context: no empty key,
// at most 8 KiB in all (measured as its canonical encoding, which is what the
// ciphertext authenticates).
func checkContext(what string, ec map[string]string) error {
	if len(ec) == 0 {
		return nil
	}
	if _, ok := ec[""]; ok {
		return validationErr("%s has an empty key", what)
	}
	if n := len(keycrypto.CanonicalContext(ec)); n > maxContextBytes {
		return validationErr("%s is %d bytes; at most %d bytes are allowed", what, n, maxContextBytes)
	}
	return nil
}

// checkDescription applies AWS's limit: at most 8,192 characters.
func checkDescription(d string) error {
	if n := utf8.RuneCountInString(d); n > maxDescription {
		return validationErr("Description is %d characters long; at most %d are allowed", n, maxDescription)
	}
	return nil
}

// checkPolicySize applies AWS's limit on a key policy: 32 KiB.
func checkPolicySize(doc string) error {
	if len(doc) > maxPolicyBytes {
		return malformedPolicy("the key policy is %d bytes; a key policy is at most %d bytes (32 KiB)", len(doc), maxPolicyBytes)
	}
	return nil
}
