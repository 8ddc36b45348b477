package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/raftkms/raftkms/internal/buildinfo"
)

// Help pages are made from the same tables the parser reads (flagCatalog,
// globalTable, the registered commands), so a flag cannot exist without
// its help nor its help without the flag.

// printUsage lists the global flags and the commands (of a group, when
// given).
func printUsage(w io.Writer, group string) {
	fmt.Fprintln(w, "kmsctl - the raftkms command line, following `aws kms` of the AWS CLI v2")
	fmt.Fprintln(w, "\nSYNOPSIS\n  kmsctl [global options] <command> [<subcommand>] [parameters]")
	fmt.Fprintln(w, "\nGLOBAL OPTIONS (before or after the command)")
	for _, d := range globalTable {
		writeFlagHelp(w, flagSpec{name: d.name, flagDef: d.flagDef})
	}
	fmt.Fprintln(w, "\nCOMMANDS")
	for _, n := range commandNames() {
		if group == "" || strings.HasPrefix(n, group+" ") {
			fmt.Fprintf(w, "  %-38s %s\n", n, commands[n].summary)
		}
	}
	fmt.Fprintln(w, "\nEXIT CODES\n  0 success; 252 the command line or a parameter is wrong (nothing was sent);")
	fmt.Fprintln(w, "  254 the cluster answered with an error; 255 anything else (no connection, TLS, bad base64, timeout).")
	fmt.Fprintln(w, "\nRun 'kmsctl <command> help' (or 'kmsctl help <command>', 'kmsctl <command> --help') for a command's page.")
}

// printCommandHelp is one command's page: what it does, its synopsis, every
// flag with its type, allowed values, default and an example, and an
// example command line.
func printCommandHelp(w io.Writer, c *command) {
	fmt.Fprintf(w, "NAME\n  kmsctl %s - %s\n", c.name, c.summary)
	fmt.Fprintf(w, "\nSYNOPSIS\n  kmsctl %s", strings.Join(append([]string{c.name}, c.args...), " "))
	for _, f := range c.flags {
		arg := " <" + f.kind.typeName() + ">"
		if f.kind == kindBool {
			arg = ""
		}
		if f.kind == kindList {
			arg = " <value> [<value>...]"
		}
		if f.required {
			fmt.Fprintf(w, "\n    --%s%s", f.name, arg)
		} else {
			fmt.Fprintf(w, "\n    [--%s%s]", f.name, arg)
		}
	}
	fmt.Fprintln(w, "\n    [--cli-input-json <json> | --cli-input-yaml <yaml>] [--generate-cli-skeleton [input|yaml-input]]")
	fmt.Fprintln(w, "    [global options: see 'kmsctl help']")
	if len(c.flags) > 0 {
		fmt.Fprintln(w, "\nOPTIONS")
		for _, f := range c.flags {
			writeFlagHelp(w, f)
		}
	}
	fmt.Fprintf(w, "\nEXAMPLE\n  %s\n", exampleLine(c))
	if len(inputFlags(c)) > 0 {
		fmt.Fprintf(w, "\n  The same through a file: kmsctl %s --generate-cli-skeleton > in.json, edit it, then\n", c.name)
		fmt.Fprintf(w, "  kmsctl %s --cli-input-json file://in.json\n", c.name)
	}
}

// writeFlagHelp writes one flag's entry.
func writeFlagHelp(w io.Writer, f flagSpec) {
	req := "optional"
	if f.required {
		req = "required"
	}
	fmt.Fprintf(w, "  --%s (%s, %s)\n", f.name, f.kind.typeName(), req)
	fmt.Fprintf(w, "      %s\n", f.doc)
	if len(f.choices) > 0 {
		fmt.Fprintf(w, "      Allowed values: %s\n", strings.Join(f.choices, ", "))
	}
	if f.def != "" {
		fmt.Fprintf(w, "      Default: %s\n", f.def)
	}
	if f.kind == kindBool {
		fmt.Fprintf(w, "      Example: --%s (turn off with --no-%s)\n", f.name, f.name)
	} else if f.example != "" {
		fmt.Fprintf(w, "      Example: --%s %s\n", f.name, f.example)
	}
	if p := paramName(f.name, f.flagDef); f.param != "-" && p != "" && !isGlobalFlag(f.name) {
		fmt.Fprintf(w, "      In --cli-input-json: %q\n", p)
	}
}

func isGlobalFlag(name string) bool { return findGlobal(name) != nil }

// exampleLine is a command line with every required flag set to its
// example value.
func exampleLine(c *command) string {
	parts := []string{"kmsctl", c.name}
	for _, a := range c.args {
		parts = append(parts, argExamples[a])
	}
	for _, f := range c.flags {
		if !f.required {
			continue
		}
		parts = append(parts, "--"+f.name)
		if f.kind != kindBool {
			parts = append(parts, shellQuote(f.example))
		}
	}
	return strings.Join(parts, " ")
}

// argExamples are example values of commands' positional arguments.
var argExamples = map[string]string{"FILE": "cluster.snap"}

func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t'\"$`\\{}[]*?&|;<>()!") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// subcommands are a group's subcommand names.
func subcommands(group string) []string {
	var out []string
	for _, n := range commandNames() {
		if sub, ok := strings.CutPrefix(n, group+" "); ok {
			out = append(out, sub)
		}
	}
	return out
}

// versionLine is kmsctl's version: the module version, the commit it was
// built from (and whether the tree had changes), the Go version, the
// platform, as `aws --version` prints its own.
func versionLine() string { return buildinfo.Line("kmsctl") }

func printVersion(w io.Writer) { fmt.Fprintln(w, versionLine()) }
