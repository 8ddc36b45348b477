package awsapi

import (
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error is an AWS JSON error answer: HTTP status, exception name (the
// "__type" member and the x-amzn-ErrorType header) and message.
type Error struct {
	Type    string
	Message string
	Status  int
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

func newError(status int, typ, msg string) *Error {
	return &Error{Type: typ, Message: msg, Status: status}
}

// internalTypes are the exceptions AWS KMS answers with a 5xx status (SDKs
// retry those).
var internalTypes = map[string]int{
	"KMSInternalException":       http.StatusInternalServerError,
	"DependencyTimeoutException": http.StatusServiceUnavailable,
}

// codeTypes name an exception for a gRPC status that carries none.
var codeTypes = map[codes.Code]string{
	codes.NotFound:           "NotFoundException",
	codes.InvalidArgument:    "ValidationException",
	codes.AlreadyExists:      "AlreadyExistsException",
	codes.PermissionDenied:   "AccessDeniedException",
	codes.Unauthenticated:    "UnrecognizedClientException",
	codes.ResourceExhausted:  "LimitExceededException",
	codes.FailedPrecondition: "KMSInvalidStateException",
	codes.Aborted:            "ConflictException",
	codes.Unimplemented:      "UnsupportedOperationException",
	codes.DeadlineExceeded:   "DependencyTimeoutException",
}

// fromStatus turns an error of the service layer (a gRPC status whose
// message starts with the exception name, "NotFoundException: ...") into
// the AWS error.
func fromStatus(err error) *Error {
	st, ok := status.FromError(err)
	if !ok {
		return newError(http.StatusInternalServerError, "KMSInternalException", "internal error")
	}
	typ, msg := "", st.Message()
	if name, rest, found := strings.Cut(msg, ": "); found && strings.HasSuffix(name, "Exception") && !strings.ContainsAny(name, " .") {
		typ, msg = name, rest
	}
	if typ == "" {
		typ = codeTypes[st.Code()]
	}
	if typ == "" {
		typ = "KMSInternalException"
	}
	code := http.StatusBadRequest
	if c, ok := internalTypes[typ]; ok {
		code = c
	}
	if typ == "DryRunOperationException" {
		code = http.StatusPreconditionFailed // as AWS KMS answers a dry run that would succeed
	}
	if st.Code() == codes.Unavailable || st.Code() == codes.Internal || st.Code() == codes.Unknown {
		// No leader yet, a lost leader, an outcome unknown: SDKs retry 5xx.
		code = http.StatusInternalServerError
		if typ != "DependencyTimeoutException" {
			typ = "KMSInternalException"
		}
	}
	return newError(code, typ, msg)
}
