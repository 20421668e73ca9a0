package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"
)

// Exit codes of the CLI.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
	exitDeny  = 3
	// exitTimeout: a command that waits for something (revocation status)
	// gave up at its deadline before it happened.
	exitTimeout = 4
)

// usageErrorf returns a usageError (declared in server.go: a mistake in how
// the command was called, exit 2).
func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// codeError ends the process with a given code; a nil err prints nothing
// (the command already said everything, as check does for DENY).
type codeError struct {
	code int
	err  error
}

func (e *codeError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *codeError) Unwrap() error { return e.err }

// asRuntimeError marks an error returned by a running command as exit 1,
// unless it already says otherwise.
func asRuntimeError(err error) error {
	if err == nil {
		return nil
	}
	var ue usageError
	var ce *codeError
	if errors.As(err, &ue) || errors.As(err, &ce) {
		return err
	}
	return &codeError{code: exitError, err: err}
}

// reportError prints err to stderr and returns the exit code. Errors that
// are neither usage errors nor marked by asRuntimeError come from cobra
// itself (unknown command or flag, wrong arguments): usage errors.
func reportError(stderr io.Writer, cmd *cobra.Command, err error) int {
	if err == nil {
		return exitOK
	}
	var ce *codeError
	if errors.As(err, &ce) {
		if ce.err != nil {
			fmt.Fprintf(stderr, "error: %s\n", describeError(ce.err))
		}
		return ce.code
	}
	fmt.Fprintf(stderr, "error: %s\n", err)
	if cmd != nil {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return exitUsage
}

// describeError renders a gRPC status as "<message> (code <Code>)" and any
// other error as its text.
func describeError(err error) string {
	var he *hintError
	if errors.As(err, &he) {
		return describeError(he.err) + "\n" + he.hint
	}
	if st, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s (code %s)", st.Message(), st.Code())
	}
	return err.Error()
}
