package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/raftkms/raftkms/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Exit codes, as the AWS CLI v2 has them (DESIGN §7).
const (
	exitOK      = 0
	exitUsage   = 252 // the command line or a parameter is wrong; nothing was sent
	exitService = 254 // the cluster answered with an error
	exitOther   = 255 // anything else: no connection, TLS, bad base64, a timeout
)

// usageError is a mistake in the command line itself (unknown flag or
// command, missing argument): printed after the usage lines, exit 252.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// paramError is a parameter that cannot be read ("Error parsing parameter
// '--encryption-context': ...") or fails AWS's parameter validation (a
// --limit below 1): exit 252, nothing was sent.
type paramError struct{ msg string }

func (e *paramError) Error() string { return e.msg }

func paramf(format string, args ...any) error {
	return &paramError{fmt.Sprintf(format, args...)}
}

// validationf is a failed parameter check in the AWS CLI's words.
func validationf(format string, args ...any) error {
	return &paramError{"Parameter validation failed:\n" + fmt.Sprintf(format, args...)}
}

// otherError is a failure that is neither the command line's nor the
// service's answer: exit 255.
type otherError struct{ msg string }

func (e *otherError) Error() string { return e.msg }

func otherf(format string, args ...any) error {
	return &otherError{fmt.Sprintf(format, args...)}
}

// usageBanner is what the AWS CLI prints before a command-line error.
const usageBanner = `usage: kmsctl [options] <command> [<subcommand>] [parameters]
To see help text, you can run:

  kmsctl help
  kmsctl <command> help
  kmsctl <command> <subcommand> help

`

// fail prints err the way the AWS CLI v2 prints it, on stderr, and returns
// its exit code. op is the API operation that was called ("" when none was).
func fail(stderr io.Writer, err error, op string, conn *connInfo) int {
	var ue *usageError
	var pe *paramError
	var oe *otherError
	switch {
	case errors.As(err, &ue):
		msg := ue.msg
		if !strings.HasPrefix(msg, "Unknown options:") {
			msg = "kmsctl: error: " + msg
		}
		fmt.Fprintf(stderr, "%s%s\n", usageBanner, msg)
		return exitUsage
	case errors.As(err, &pe):
		fmt.Fprintf(stderr, "\n%s\n", pe.msg)
		return exitUsage
	case errors.As(err, &oe):
		fmt.Fprintf(stderr, "\n%s\n", oe.msg)
		return exitOther
	}
	if st, ok := status.FromError(err); ok && !errors.Is(err, context.DeadlineExceeded) {
		if msg, local := conn.explain(st); local {
			fmt.Fprintf(stderr, "\n%s\n", msg)
			return exitOther
		}
		if op == "" {
			op = "unknown"
		}
		fmt.Fprintf(stderr, "\nAn error occurred (%s) when calling the %s operation: %s\n",
			client.ExceptionName(err), op, client.ExceptionMessage(err))
		return exitService
	}
	if errors.Is(err, context.DeadlineExceeded) {
		fmt.Fprintf(stderr, "\n%s\n", conn.timeoutMessage())
		return exitOther
	}
	fmt.Fprintf(stderr, "\n%v\n", err)
	return exitOther
}

// fromService reports whether a status came from a node's answer rather
// than from the way to it: raftkms puts an exception name at the start of
// every message it sends (DESIGN §7); gRPC's own transport errors have none.
func fromService(st *status.Status) bool {
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Unknown, codes.Internal:
		name, _, _ := strings.Cut(st.Message(), ":")
		return strings.HasSuffix(name, "Exception") && !strings.ContainsAny(name, " \t")
	}
	return true
}
