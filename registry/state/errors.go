package state

import (
	"errors"
	"fmt"
)

// ErrorKind classifies business errors so that every layer (and a retried,
// de-duplicated request) maps them to the same status code.
type ErrorKind uint32

// Error kinds. Values are stored in snapshots: append only.
const (
	KindUnknown ErrorKind = iota
	KindInvalidArgument
	KindNotFound
	KindAlreadyExists
	KindFailedPrecondition
	KindPermissionDenied
)

// Sentinel errors; every *Error matches exactly one of them with errors.Is.
var (
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrNotFound           = errors.New("not found")
	ErrAlreadyExists      = errors.New("already exists")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrPermissionDenied   = errors.New("permission denied")
	// ErrCorruptCommand means a log entry could not be decoded. It is the same
	// on every replica (the bytes are the same) and never changes state.
	ErrCorruptCommand = errors.New("corrupt command")
)

var kindSentinel = map[ErrorKind]error{
	KindInvalidArgument:    ErrInvalidArgument,
	KindNotFound:           ErrNotFound,
	KindAlreadyExists:      ErrAlreadyExists,
	KindFailedPrecondition: ErrFailedPrecondition,
	KindPermissionDenied:   ErrPermissionDenied,
}

// Error is a business error that names the request field it is about.
type Error struct {
	Kind  ErrorKind
	Field string
	Msg   string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// Is makes errors.Is(err, ErrNotFound) and friends work.
func (e *Error) Is(target error) bool { return kindSentinel[e.Kind] == target }

func newError(kind ErrorKind, field, format string, args ...any) *Error {
	return &Error{Kind: kind, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Invalid returns an InvalidArgument error naming field.
func Invalid(field, format string, args ...any) *Error {
	return newError(KindInvalidArgument, field, format, args...)
}

// NotFound returns a NotFound error naming field.
func NotFound(field, format string, args ...any) *Error {
	return newError(KindNotFound, field, format, args...)
}

// AlreadyExists returns an AlreadyExists error naming field.
func AlreadyExists(field, format string, args ...any) *Error {
	return newError(KindAlreadyExists, field, format, args...)
}

// FailedPrecondition returns a FailedPrecondition error naming field.
func FailedPrecondition(field, format string, args ...any) *Error {
	return newError(KindFailedPrecondition, field, format, args...)
}

// PermissionDenied returns a PermissionDenied error naming field: the
// request is well formed but its signer may not do this.
func PermissionDenied(field, format string, args ...any) *Error {
	return newError(KindPermissionDenied, field, format, args...)
}
