package awsapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Credentials finds the secret of an access key. Access keys are replicated
// state; the secret is opened from its sealed form only to check a
// signature, and never leaves this package in an error or a log line.
type Credentials interface {
	// LookupAccessKey returns the identity an access key belongs to and its
	// secret; ok is false for an access key the cluster does not know.
	LookupAccessKey(ctx context.Context, accessKeyID string) (identity, secret string, ok bool, err error)
}

const (
	sigAlgorithm = "AWS4-HMAC-SHA256"
	amzDate      = "20060102T150405Z"
	// MaxSkew is how far a request's signing time may be from this node's
	// clock, as AWS allows.
	MaxSkew = 15 * time.Minute
	service = "kms"
)

// sigv4Auth is a parsed Authorization header.
type sigv4Auth struct {
	accessKeyID, date, region, service string
	signedHeaders                      []string
	signature                          string
}

func incomplete(msg string) *Error {
	return newError(http.StatusBadRequest, "IncompleteSignatureException", msg)
}
func invalidSig(msg string) *Error {
	return newError(http.StatusBadRequest, "InvalidSignatureException", msg)
}
func unrecognized() *Error {
	return newError(http.StatusBadRequest, "UnrecognizedClientException", "The security token included in the request is invalid.")
}

func parseAuthorization(h string) (*sigv4Auth, *Error) {
	alg, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	if alg != sigAlgorithm {
		return nil, incomplete("the Authorization header must use " + sigAlgorithm)
	}
	a := &sigv4Auth{}
	var cred, signed string
	for _, part := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Credential":
			cred = v
		case "SignedHeaders":
			signed = v
		case "Signature":
			a.signature = v
		}
	}
	if cred == "" || signed == "" || a.signature == "" {
		return nil, incomplete("the Authorization header requires Credential, SignedHeaders and Signature")
	}
	parts := strings.Split(cred, "/")
	if len(parts) != 5 || parts[4] != "aws4_request" || parts[0] == "" {
		return nil, incomplete("Credential must be ACCESSKEYID/DATE/REGION/SERVICE/aws4_request")
	}
	a.accessKeyID, a.date, a.region, a.service = parts[0], parts[1], parts[2], parts[3]
	a.signedHeaders = strings.Split(signed, ";")
	return a, nil
}

// verify checks a request's SigV4 signature and returns the identity it was
// signed by. The signature is recomputed by the AWS SDK's own signer over a
// copy of the request that holds exactly the headers the client signed, with
// the client's signing time and the hash of the body received, and compared
// in constant time.
func (h *Handler) verify(r *http.Request, body []byte) (string, *Error) {
	authz := r.Header.Get("Authorization")
	if authz == "" {
		if r.URL.Query().Get("X-Amz-Algorithm") != "" {
			return "", incomplete("query-string (presigned) authentication is not supported; sign the Authorization header")
		}
		return "", newError(http.StatusBadRequest, "MissingAuthenticationTokenException", "Request is missing Authentication Token")
	}
	a, aerr := parseAuthorization(authz)
	if aerr != nil {
		return "", aerr
	}
	if a.service != service {
		return "", invalidSig("Credential should be scoped to correct service: 'kms'.")
	}
	if a.region != h.region {
		return "", invalidSig(fmt.Sprintf("Credential should be scoped to a valid region: this cluster's region is '%s'.", h.region))
	}
	dateHdr := r.Header.Get("X-Amz-Date")
	if dateHdr == "" {
		return "", incomplete("Authorization header requires existence of a 'X-Amz-Date' header.")
	}
	t, err := time.Parse(amzDate, dateHdr)
	if err != nil {
		return "", incomplete("X-Amz-Date must be in the form YYYYMMDD'T'HHMMSS'Z'")
	}
	if a.date != t.Format("20060102") {
		return "", invalidSig("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP.")
	}
	now := h.now().UTC()
	if t.Before(now.Add(-MaxSkew)) {
		return "", invalidSig(fmt.Sprintf("Signature expired: %s is now earlier than %s (%s - 15 min.)",
			dateHdr, now.Add(-MaxSkew).Format(amzDate), now.Format(amzDate)))
	}
	if t.After(now.Add(MaxSkew)) {
		return "", invalidSig(fmt.Sprintf("Signature not yet current: %s is still later than %s (%s + 15 min.)",
			dateHdr, now.Add(MaxSkew).Format(amzDate), now.Format(amzDate)))
	}
	if r.Header.Get("X-Amz-Security-Token") != "" {
		// raftkms issues long-term access keys only, no session tokens.
		return "", unrecognized()
	}
	if !sort.StringsAreSorted(a.signedHeaders) || !containsStr(a.signedHeaders, "host") {
		return "", invalidSig("SignedHeaders must be sorted, lower case and include host")
	}

	sum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(sum[:])
	if ph := r.Header.Get("X-Amz-Content-Sha256"); ph != "" && ph != payloadHash && ph != "UNSIGNED-PAYLOAD" {
		return "", invalidSig("The provided X-Amz-Content-Sha256 header does not match the body.")
	}
	if r.Header.Get("X-Amz-Content-Sha256") == "UNSIGNED-PAYLOAD" {
		return "", invalidSig("unsigned payloads are not accepted")
	}

	identity, secret, ok, err := h.creds.LookupAccessKey(r.Context(), a.accessKeyID)
	if err != nil {
		h.log.Warn("looking up an access key failed", "access_key_id", a.accessKeyID, "error", err)
		return "", newError(http.StatusInternalServerError, "KMSInternalException", "the access key could not be checked; retry")
	}
	if !ok {
		return "", unrecognized()
	}

	cp, cerr := signedCopy(r, a.signedHeaders)
	if cerr != nil {
		return "", cerr
	}
	creds := aws.Credentials{AccessKeyID: a.accessKeyID, SecretAccessKey: secret}
	if err := h.signer.SignHTTP(context.Background(), creds, cp, payloadHash, service, a.region, t); err != nil {
		return "", invalidSig("the request could not be signed for checking")
	}
	mine, perr := parseAuthorization(cp.Header.Get("Authorization"))
	if perr != nil {
		return "", invalidSig("the request could not be signed for checking")
	}
	same := strings.Join(mine.signedHeaders, ";") == strings.Join(a.signedHeaders, ";")
	if !same || subtle.ConstantTimeCompare([]byte(mine.signature), []byte(a.signature)) != 1 {
		return "", invalidSig("The request signature we calculated does not match the signature you provided. " +
			"Check your AWS Secret Access Key and signing method.")
	}
	return identity, nil
}

// signedCopy is a new request with the method, URL, host and exactly the
// signed headers of r.
func signedCopy(r *http.Request, signed []string) (*http.Request, *Error) {
	u := &url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	if r.TLS != nil {
		u.Scheme = "https"
	}
	cp := &http.Request{Method: r.Method, URL: u, Host: r.Host, Header: http.Header{}}
	for _, name := range signed {
		switch name {
		case "host":
			continue
		case "content-length":
			if r.ContentLength <= 0 {
				return nil, invalidSig("content-length is signed but the request has no length")
			}
			cp.ContentLength = r.ContentLength
			continue
		}
		vals := r.Header.Values(name)
		if len(vals) == 0 {
			return nil, invalidSig(fmt.Sprintf("the signed header %s is missing", name))
		}
		cp.Header[http.CanonicalHeaderKey(name)] = vals
	}
	return cp, nil
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func newSigner() *v4.Signer {
	return v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = false })
}
