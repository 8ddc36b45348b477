package client

import (
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ExceptionName is the AWS exception name of an error returned by a raftkms
// call ("NotFoundException", "DisabledException", ...), taken from the start
// of the status message (DESIGN §7). When the message names none, the name
// comes from the gRPC code, KMSInternalException for codes without a better
// match. It is "" for a nil error.
func ExceptionName(err error) string {
	if err == nil {
		return ""
	}
	st, _ := status.FromError(err)
	if name, _, ok := splitException(st.Message()); ok {
		return name
	}
	switch st.Code() {
	case codes.NotFound:
		return "NotFoundException"
	case codes.AlreadyExists:
		return "AlreadyExistsException"
	case codes.InvalidArgument:
		return "ValidationException"
	case codes.ResourceExhausted:
		return "LimitExceededException"
	case codes.PermissionDenied, codes.Unauthenticated:
		return "AccessDeniedException"
	case codes.DeadlineExceeded:
		return "DependencyTimeoutException"
	case codes.FailedPrecondition:
		return "KMSInvalidStateException"
	case codes.Unimplemented:
		return "UnsupportedOperationException"
	}
	return "KMSInternalException"
}

// ExceptionMessage is the message of an error without its exception name:
// "key 1234 is not found" for "NotFoundException: key 1234 is not found".
func ExceptionMessage(err error) string {
	if err == nil {
		return ""
	}
	st, _ := status.FromError(err)
	if _, msg, ok := splitException(st.Message()); ok {
		return msg
	}
	return st.Message()
}

// splitException splits "NameException: message". A name is a single word
// of letters and digits ending in "Exception".
func splitException(msg string) (name, rest string, ok bool) {
	i := strings.Index(msg, ":")
	if i <= 0 {
		if isExceptionName(msg) {
			return msg, "", true
		}
		return "", "", false
	}
	name = msg[:i]
	if !isExceptionName(name) {
		return "", "", false
	}
	return name, strings.TrimPrefix(msg[i+1:], " "), true
}

func isExceptionName(s string) bool {
	if !strings.HasSuffix(s, "Exception") || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			return false
		}
	}
	return true
}
