package fsm

import (
	"errors"
	"fmt"
)

// Code classifies a deterministic rejection of an event by Apply. Codes are
// stored in snapshots (remembered request results), so never renumber them.
type Code uint32

// Rejection codes. The rpc package maps each to a gRPC code and an AWS-style
// exception name in one place.
const (
	CodeOK                   Code = 0
	CodeNotFound             Code = 1
	CodeAlreadyExists        Code = 2
	CodeDisabled             Code = 3
	CodeInvalidState         Code = 4
	CodeUnsupported          Code = 5
	CodeValidation           Code = 6
	CodeLimitExceeded        Code = 7
	CodeConflict             Code = 8
	CodeIncorrectKeyMaterial Code = 9
	CodeInvalidImportToken   Code = 10
	CodeExpiredImportToken   Code = 11
	// CodeIdempotentParameterMismatch: the principal already used this
	// request ID for a different request (another fingerprint).
	CodeIdempotentParameterMismatch Code = 12
	// CodeAliasTargetChanged: the alias no longer points to the key the
	// request was authorized against (UpdateAlias/DeleteAlias guard).
	CodeAliasTargetChanged Code = 13
	// CodeRootKeyMismatch: a node registered with a root key other than
	// the cluster's.
	CodeRootKeyMismatch Code = 14
)

// Rejection is the error Apply returns for a valid event that no longer
// applies. Every node rejects the same event the same way.
type Rejection struct {
	Code Code
	Msg  string
}

func (r *Rejection) Error() string { return r.Msg }

// Is makes errors.Is(err, fsm.ErrNotFound) match any rejection of that code.
func (r *Rejection) Is(target error) bool {
	t, ok := target.(*Rejection)
	return ok && t.Code == r.Code
}

// Sentinels for errors.Is; the messages of real rejections say more.
var (
	ErrNotFound             = &Rejection{CodeNotFound, "not found"}
	ErrAlreadyExists        = &Rejection{CodeAlreadyExists, "already exists"}
	ErrDisabled             = &Rejection{CodeDisabled, "key is disabled"}
	ErrInvalidState         = &Rejection{CodeInvalidState, "key is in an invalid state"}
	ErrUnsupported          = &Rejection{CodeUnsupported, "unsupported operation"}
	ErrValidation           = &Rejection{CodeValidation, "invalid request"}
	ErrLimitExceeded        = &Rejection{CodeLimitExceeded, "limit exceeded"}
	ErrConflict             = &Rejection{CodeConflict, "guard does not match current state"}
	ErrIncorrectKeyMaterial = &Rejection{CodeIncorrectKeyMaterial, "incorrect key material"}
	ErrInvalidImportToken   = &Rejection{CodeInvalidImportToken, "invalid import token"}
	ErrExpiredImportToken   = &Rejection{CodeExpiredImportToken, "import token expired"}

	ErrIdempotentParameterMismatch = &Rejection{CodeIdempotentParameterMismatch, "request ID reused for a different request"}
	ErrAliasTargetChanged          = &Rejection{CodeAliasTargetChanged, "alias target changed"}
	ErrRootKeyMismatch             = &Rejection{CodeRootKeyMismatch, "root key does not match the cluster's"}
)

// ErrCorruptEntry is returned by DecodeEntry for bytes that are not a log
// entry this build can read.
var ErrCorruptEntry = errors.New("corrupt log entry")

// ErrCorruptSnapshot is returned by Restore for a stream that is not a
// complete snapshot.
var ErrCorruptSnapshot = errors.New("corrupt snapshot")

func reject(code Code, format string, args ...any) *Rejection {
	return &Rejection{Code: code, Msg: fmt.Sprintf(format, args...)}
}
