// Command kmsctl is the raftkms command line. It follows the AWS CLI v2's
// `aws kms` commands, flags, output and exit codes (DESIGN §7, §9), so that
// a script written for one runs with the other:
//
//	kmsctl [--endpoints A,B,C | --endpoint-url URL] COMMAND [flags]
//
// Endpoints default to $RAFTKMS_ENDPOINTS, then 127.0.0.1:7001. Global flags
// may come before or after the command. `kmsctl help` lists them and the
// commands; `kmsctl COMMAND help` explains one command. docs/kmsctl.md is
// the manual.
package main

import (
	"context"
	"io"
	"os"
	"strings"

	"github.com/raftkms/raftkms/client"
	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
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
		return fail(stderr, err, "", nil)
	}
	g := p.params.global
	switch {
	case g.version:
		printVersion(stdout)
		return exitOK
	case p.cmd == nil && p.group != "":
		if p.help || g.help {
			printUsage(stdout, p.group)
			return exitOK
		}
		return fail(stderr, usagef("%s needs a subcommand: %s", p.group, strings.Join(subcommands(p.group), ", ")), "", nil)
	case p.cmd == nil && g.help:
		printUsage(stdout, "")
		return exitOK
	case p.cmd == nil:
		return fail(stderr, usagef("the following arguments are required: command"), "", nil)
	case p.help || g.help:
		printCommandHelp(stdout, p.cmd)
		return exitOK
	case g.skeleton != "":
		if err := printSkeleton(stdout, p.cmd, g.skeleton); err != nil {
			return fail(stderr, err, "", nil)
		}
		return exitOK
	}

	var debug io.Writer
	if g.debug {
		debug = stderr
	}
	info := newConnInfo(g, debug)
	dial, err := info.dialOptions()
	if err != nil {
		return fail(stderr, err, "", nil)
	}
	if g.debug {
		info.debugf("kmsctl %s; endpoints %s", versionLine(), g.endpoints)
	}
	conn, err := client.New(client.Config{
		Endpoints:      strings.Split(g.endpoints, ","),
		MaxAttempts:    12,
		StaleOK:        g.staleOK,
		DialOptions:    dial,
		AttemptTimeout: g.readTimeout,
		FailFast:       true,
	})
	if err != nil {
		return fail(stderr, usagef("argument --endpoints: %v", err), "", nil)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
	defer cancel()

	e := &env{ctx: ctx, g: g, stdout: stdout, conn: conn}
	result, err := p.cmd.run(e, p.params)
	if err != nil {
		return fail(stderr, err, info.operation(), info)
	}
	g.operation = info.operation()
	if err := printResult(stdout, result, g); err != nil {
		return fail(stderr, err, info.operation(), info)
	}
	return exitOK
}
