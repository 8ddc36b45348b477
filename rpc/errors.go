package rpc

import (
	"context"
	"errors"
	"fmt"

	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/keycrypto"
	"github.com/raftkms/raftkms/raftnode"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// apiError is an error with its AWS-style exception name and gRPC code,
// made by the validation code of this package.
type apiError struct {
	code codes.Code
	name string
	msg  string
}

func (e *apiError) Error() string { return e.name + ": " + e.msg }

func validationErr(format string, args ...any) error {
	return &apiError{codes.InvalidArgument, "ValidationException", fmt.Sprintf(format, args...)}
}

func notFoundErr(format string, args ...any) error {
	return &apiError{codes.NotFound, "NotFoundException", fmt.Sprintf(format, args...)}
}

func invalidCiphertextErr(msg string) error {
	return &apiError{codes.InvalidArgument, "InvalidCiphertextException", msg}
}

func unavailableErr(format string, args ...any) error {
	return &apiError{codes.Unavailable, "KMSInternalException", fmt.Sprintf(format, args...)}
}

func unsupportedErr(format string, args ...any) error {
	return &apiError{codes.FailedPrecondition, "UnsupportedOperationException", fmt.Sprintf(format, args...)}
}

func internalErr(format string, args ...any) error {
	return &apiError{codes.Internal, "KMSInternalException", fmt.Sprintf(format, args...)}
}

// rejectionNames maps the state machine's deterministic rejections to gRPC
// codes and exception names (DESIGN §7).
var rejectionNames = map[fsm.Code]struct {
	code codes.Code
	name string
}{
	fsm.CodeNotFound:             {codes.NotFound, "NotFoundException"},
	fsm.CodeAlreadyExists:        {codes.AlreadyExists, "AlreadyExistsException"},
	fsm.CodeDisabled:             {codes.FailedPrecondition, "DisabledException"},
	fsm.CodeInvalidState:         {codes.FailedPrecondition, "KMSInvalidStateException"},
	fsm.CodeUnsupported:          {codes.FailedPrecondition, "UnsupportedOperationException"},
	fsm.CodeValidation:           {codes.InvalidArgument, "ValidationException"},
	fsm.CodeLimitExceeded:        {codes.ResourceExhausted, "LimitExceededException"},
	fsm.CodeConflict:             {codes.Aborted, "ConflictException"},
	fsm.CodeIncorrectKeyMaterial: {codes.InvalidArgument, "IncorrectKeyMaterialException"},
	fsm.CodeInvalidImportToken:   {codes.InvalidArgument, "InvalidImportTokenException"},
	fsm.CodeExpiredImportToken:   {codes.InvalidArgument, "ExpiredImportTokenException"},

	fsm.CodeIdempotentParameterMismatch: {codes.FailedPrecondition, "IdempotentParameterMismatchException"},
	fsm.CodeAliasTargetChanged:          {codes.FailedPrecondition, "KMSInvalidStateException"},
	fsm.CodeRootKeyMismatch:             {codes.FailedPrecondition, "RootKeyMismatchException"},
}

// toStatus turns any error of the server into a gRPC status whose message
// starts with the AWS exception name. It is the one place where errors
// become codes. Messages never carry key material or plaintext.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err // already a status (for example, from the leader we forwarded to)
	}
	var api *apiError
	var rej *fsm.Rejection
	switch {
	case errors.As(err, &api):
		return status.Error(api.code, api.Error())
	case errors.As(err, &rej):
		n, ok := rejectionNames[rej.Code]
		if !ok {
			n.code, n.name = codes.Internal, "KMSInternalException"
		}
		return status.Error(n.code, n.name+": "+rej.Msg)
	case errors.Is(err, raftnode.ErrAmbiguous):
		return status.Error(codes.Unavailable, "KMSInternalException: the outcome is unknown; retry with the same request ID")
	case errors.Is(err, raftnode.ErrNotLeader), errors.Is(err, raftnode.ErrBusy), errors.Is(err, raftnode.ErrShutdown),
		errors.Is(err, raftnode.ErrStaleRead):
		return status.Error(codes.Unavailable, "KMSInternalException: "+err.Error()+"; retry")
	case errors.Is(err, keycrypto.ErrInvalidCiphertext):
		return status.Error(codes.InvalidArgument, "InvalidCiphertextException: "+err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "DependencyTimeoutException: "+err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "KMSInternalException: request cancelled")
	}
	for _, e := range asymmetricErrors {
		if errors.Is(err, e.err) {
			return status.Error(e.code, e.name+": "+err.Error())
		}
	}
	return status.Error(codes.Internal, "KMSInternalException: "+err.Error())
}
