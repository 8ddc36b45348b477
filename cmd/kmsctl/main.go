// Command kmsctl is the raftkms command line. It follows the AWS CLI's
// `aws kms` commands, flags and JSON output (DESIGN §9), so that a person
// who knows one knows the other:
//
//	kmsctl [--endpoints A,B,C] COMMAND [flags]
//
// Endpoints default to $RAFTKMS_ENDPOINTS, then 127.0.0.1:7001. Global flags
// (--endpoints, --output json|text, --query EXPR, --cli-binary-format,
// --stale-ok, --timeout) may come before or after the command.
package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/raftkms/raftkms/pki"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"io"
	"os"
	"strings"

	"github.com/raftkms/raftkms/client"
	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/grpc/status"
)

// Exit codes.
const (
	exitOK      = 0
	exitService = 1 // the cluster answered with an error, or could not be reached
	exitUsage   = 2 // the command line or an input is wrong; nothing was called
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// env is what a command runs with.
type env struct {
	ctx    context.Context
	g      *globals
	stdout io.Writer
	conn   *client.Client
}

func (e *env) kms() kmsv1.KeyManagementServiceClient { return e.conn.KMS() }

func (e *env) cluster() clusterv1.ClusterServiceClient { return e.conn.Cluster() }

// run is the whole program: it parses args, makes the call and prints the
// answer, and returns the exit code. Tests call it in-process.
func run(args []string, stdout, stderr io.Writer) int {
	p, err := parseArgs(args)
	if err != nil {
		return fail(stderr, err)
	}
	g := p.params.global
	switch {
	case p.cmd == nil && p.group != "":
		if p.help || g.help {
			printUsage(stdout, p.group)
			return exitOK
		}
		printUsage(stderr, p.group)
		return exitUsage
	case p.cmd == nil && g.help:
		printUsage(stdout, "")
		return exitOK
	case p.cmd == nil:
		printUsage(stderr, "")
		return exitUsage
	case p.help || g.help:
		printCommandUsage(stdout, p.cmd)
		return exitOK
	}

	var dial []grpc.DialOption
	if g.tls.Set() {
		cert, ca, err := g.tls.Load()
		if err != nil {
			return fail(stderr, usagef("TLS (--ca, --cert, --key): %v", err))
		}
		dial = append(dial, grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientConfig(cert, ca))))
	}
	conn, err := client.New(client.Config{
		Endpoints:   strings.Split(g.endpoints, ","),
		MaxAttempts: 12,
		StaleOK:     g.staleOK,
		DialOptions: dial,
	})
	if err != nil {
		return fail(stderr, usagef("%v", err))
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
	defer cancel()

	e := &env{ctx: ctx, g: g, stdout: stdout, conn: conn}
	result, err := p.cmd.run(e, p.params)
	if err != nil {
		return fail(stderr, err)
	}
	if err := printResult(stdout, result, g); err != nil {
		return fail(stderr, err)
	}
	return exitOK
}

// fail prints an error the way DESIGN §9 asks: "ERROR (Exception): message"
// on stderr, and returns its exit code.
func fail(stderr io.Writer, err error) int {
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "ERROR (ValidationException): %s\n", ue.msg)
		return exitUsage
	}
	if _, ok := status.FromError(err); ok {
		fmt.Fprintf(stderr, "ERROR (%s): %s\n", client.ExceptionName(err), client.ExceptionMessage(err))
		return exitService
	}
	fmt.Fprintf(stderr, "ERROR (KMSInternalException): %v\n", err)
	return exitService
}

// printUsage lists the commands (of a group, when given).
func printUsage(w io.Writer, group string) {
	fmt.Fprintln(w, "usage: kmsctl [--endpoints A,B,C] [--output json|text] [--query EXPR] COMMAND [flags]")
	fmt.Fprintln(w, "\nGlobal flags (before or after the command):")
	fmt.Fprintln(w, "  --endpoints A,B,C           node gRPC addresses (default $RAFTKMS_ENDPOINTS, then 127.0.0.1:7001)")
	fmt.Fprintln(w, "  --output json|text          output format (default json)")
	fmt.Fprintln(w, "  --query EXPR                JMESPath subset: a.b, a[0], a[].b, a[*].b, a[?b=='x'], length(a)")
	fmt.Fprintln(w, "  --cli-binary-format F       base64 (default) or raw-in-base64-out (--plaintext is raw text)")
	fmt.Fprintln(w, "  --stale-ok                  reads skip the linearizable read-index round")
	fmt.Fprintln(w, "  --timeout D                 bound on the whole command (default 30s)")
	fmt.Fprintln(w, "  --no-paginate               list commands make one call")
	fmt.Fprintln(w, "  --ca F --cert F --key F     mutual TLS: the cluster CA and your client certificate and key (PEM;")
	fmt.Fprintln(w, "                              default $RAFTKMS_CA, $RAFTKMS_CERT, $RAFTKMS_KEY)")
	fmt.Fprintln(w, "\nCommands:")
	for _, n := range commandNames() {
		if group == "" || strings.HasPrefix(n, group+" ") {
			fmt.Fprintf(w, "  %-38s %s\n", n, commands[n].summary)
		}
	}
	fmt.Fprintln(w, "\nRun 'kmsctl COMMAND help' for a command's flags.")
}

func printCommandUsage(w io.Writer, c *command) {
	fmt.Fprintf(w, "usage: kmsctl %s", c.name)
	for _, f := range c.flags {
		arg := ""
		switch f.kind {
		case kindString:
			arg = " <value>"
		case kindInt:
			arg = " <integer>"
		case kindList:
			arg = " <value> [<value>...]"
		case kindDuration:
			arg = " <duration>"
		}
		if f.required {
			fmt.Fprintf(w, " --%s%s", f.name, arg)
		} else {
			fmt.Fprintf(w, " [--%s%s]", f.name, arg)
		}
	}
	fmt.Fprintf(w, "\n\n%s\n", c.summary)
}
