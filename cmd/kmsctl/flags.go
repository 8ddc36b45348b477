package main

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/raftkms/raftkms/pki"
)

// usageError is a mistake in the command line or its inputs: it is printed
// as a ValidationException and exits with code 2, before any call is made.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// flagKind says how a flag takes its value, as the AWS CLI does: a string
// or number takes the next argument, a list takes every argument up to the
// next flag, and a boolean takes none (--no-NAME turns it off).
type flagKind int

const (
	kindString flagKind = iota
	kindInt
	kindBool
	kindList
	kindDuration
)

// flagSpec describes one flag of a command.
type flagSpec struct {
	name     string
	kind     flagKind
	required bool
}

// parseFlagSpecs reads a command's flags from a compact list:
// "key-id!" is a required string, "limit=int", "tags=list", "managed=bool",
// "rotation-period=duration".
func parseFlagSpecs(s string) []flagSpec {
	var out []flagSpec
	for _, f := range strings.Fields(s) {
		spec := flagSpec{}
		name, kind, _ := strings.Cut(f, "=")
		if strings.HasSuffix(name, "!") {
			spec.required = true
			name = strings.TrimSuffix(name, "!")
		}
		spec.name = name
		switch kind {
		case "":
			spec.kind = kindString
		case "int":
			spec.kind = kindInt
		case "bool":
			spec.kind = kindBool
		case "list":
			spec.kind = kindList
		case "duration":
			spec.kind = kindDuration
		default:
			panic("kmsctl: bad flag kind in " + f)
		}
		out = append(out, spec)
	}
	return out
}

// params are the parsed flags of one command.
type params struct {
	values map[string][]string // as given; a list flag may hold many
	bools  map[string]bool
	global *globals
}

func newParams(g *globals) *params {
	return &params{values: map[string][]string{}, bools: map[string]bool{}, global: g}
}

func (p *params) has(name string) bool {
	_, ok := p.values[name]
	_, okb := p.bools[name]
	return ok || okb
}

// str is a string flag's value ("" when absent); the last given wins.
func (p *params) str(name string) string {
	v := p.values[name]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

func (p *params) list(name string) []string { return p.values[name] }

func (p *params) flag(name string) bool { return p.bools[name] }

// int32 is an integer flag's value, 0 when absent.
func (p *params) int32(name string) (int32, error) {
	if !p.has(name) {
		return 0, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(p.str(name)), 10, 32)
	if err != nil {
		return 0, usagef("invalid value for --%s: %q is not an integer", name, p.str(name))
	}
	return int32(n), nil
}

// seconds is a Go-duration flag's value in whole seconds, 0 when absent.
func (p *params) seconds(name string) (int64, error) {
	if !p.has(name) {
		return 0, nil
	}
	return parseSeconds(name, p.str(name))
}

// text is a text flag's value, read from a file for file://PATH.
func (p *params) text(name string) (string, error) {
	if !p.has(name) {
		return "", nil
	}
	return loadText(name, p.str(name))
}

// blob is a binary flag's value: base64 text or fileb://PATH (and raw text
// for --plaintext with --cli-binary-format raw-in-base64-out).
func (p *params) blob(name string) ([]byte, error) {
	if !p.has(name) {
		return nil, nil
	}
	raw := name == "plaintext" && p.global.binaryFormat == "raw-in-base64-out"
	return loadBlob(name, p.str(name), raw)
}

// context is an encryption-context flag's value.
func (p *params) context(name string) (map[string]string, error) {
	if !p.has(name) {
		return nil, nil
	}
	s, err := p.text(name)
	if err != nil {
		return nil, err
	}
	m, err := parseEncryptionContext(s)
	if err != nil {
		return nil, usagef("Error parsing parameter '--%s': %v", name, err)
	}
	return m, nil
}

// globals are the flags every command accepts, before or after its name.
type globals struct {
	endpoints    string
	output       string // json or text
	query        string
	hasQuery     bool
	binaryFormat string // base64 or raw-in-base64-out
	staleOK      bool
	timeout      time.Duration
	noPaginate   bool
	help         bool
	tls          pki.Files // --cert, --key, --ca: mutual TLS to a production cluster
}

// globalSpecs are the global flags. --region, --profile and --no-cli-pager
// are accepted and ignored so that scripts written for `aws kms` run as
// they are.
var globalSpecs = parseFlagSpecs("endpoints output query cli-binary-format stale-ok=bool timeout=duration " +
	"no-paginate=bool help=bool region profile no-cli-pager=bool ca cert key")

func defaultGlobals() *globals {
	g := &globals{output: "json", binaryFormat: "base64", timeout: 30 * time.Second}
	g.endpoints = os.Getenv("RAFTKMS_ENDPOINTS")
	g.tls = pki.Files{CA: os.Getenv("RAFTKMS_CA"), Cert: os.Getenv("RAFTKMS_CERT"), Key: os.Getenv("RAFTKMS_KEY")}
	if g.endpoints == "" {
		g.endpoints = "127.0.0.1:7001"
	}
	return g
}

func (g *globals) set(name, value string, on bool) error {
	switch name {
	case "endpoints":
		g.endpoints = value
	case "output":
		if value != "json" && value != "text" {
			return usagef("argument --output: invalid choice: %q (choose from 'json', 'text')", value)
		}
		g.output = value
	case "query":
		if _, err := parseQuery(value); err != nil {
			return usagef("Bad value for --query %s: %v", value, err)
		}
		g.query, g.hasQuery = value, true
	case "cli-binary-format":
		if value != "base64" && value != "raw-in-base64-out" {
			return usagef("argument --cli-binary-format: invalid choice: %q (choose from 'base64', 'raw-in-base64-out')", value)
		}
		g.binaryFormat = value
	case "stale-ok":
		g.staleOK = on
	case "timeout":
		d, err := time.ParseDuration(value)
		if err != nil || d <= 0 {
			return usagef("invalid value for --timeout: %q is not a positive Go duration (like 30s)", value)
		}
		g.timeout = d
	case "no-paginate":
		g.noPaginate = on
	case "ca":
		g.tls.CA = value
	case "cert":
		g.tls.Cert = value
	case "key":
		g.tls.Key = value
	case "help":
		g.help = on
	}
	return nil
}

func findSpec(specs []flagSpec, name string) (flagSpec, bool) {
	for _, s := range specs {
		if s.name == name {
			return s, true
		}
	}
	return flagSpec{}, false
}

// lookupFlag finds a flag by the name given on the command line, which may
// be --no-NAME for a boolean. on is false for the --no- form.
func lookupFlag(specs []flagSpec, name string) (spec flagSpec, on, ok bool) {
	if s, found := findSpec(specs, name); found {
		return s, true, true
	}
	if base, cut := strings.CutPrefix(name, "no-"); cut {
		if s, found := findSpec(specs, base); found && s.kind == kindBool {
			return s, false, true
		}
	}
	return flagSpec{}, false, false
}

// parsed is a whole command line: which command, its flags and the globals.
type parsed struct {
	cmd    *command
	group  string // "cluster" while its subcommand is missing
	params *params
	help   bool // "help" given after the command
}

// parseArgs reads a command line in one pass. Global flags are recognised
// anywhere; a command's own flags only after its name, as in the AWS CLI.
func parseArgs(args []string) (*parsed, error) {
	g := defaultGlobals()
	out := &parsed{params: newParams(g)}
	for i := 0; i < len(args); i++ {
		tok := args[i]
		if !strings.HasPrefix(tok, "--") || tok == "--" {
			if err := out.positional(tok); err != nil {
				return nil, err
			}
			continue
		}
		name, value, hasValue := strings.Cut(tok[2:], "=")
		var cmdSpecs []flagSpec
		if out.cmd != nil {
			cmdSpecs = out.cmd.flags
		}
		spec, on, ok := lookupFlag(cmdSpecs, name)
		isGlobal := false
		if !ok {
			spec, on, ok = lookupFlag(globalSpecs, name)
			isGlobal = true
		}
		if !ok {
			if out.cmd == nil && out.group == "" {
				return nil, usagef("Unknown options: %s (command flags go after the command name)", tok)
			}
			return nil, usagef("Unknown options: %s", tok)
		}
		var values []string
		switch {
		case spec.kind == kindBool:
			if hasValue {
				b, err := strconv.ParseBool(value)
				if err != nil {
					return nil, usagef("argument --%s takes no value", spec.name)
				}
				on = on && b
			}
		case hasValue:
			values = []string{value}
		case spec.kind == kindList:
			for i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
				i++
				values = append(values, args[i])
			}
			if len(values) == 0 {
				return nil, usagef("argument --%s: expected at least one argument", spec.name)
			}
		default:
			if i+1 >= len(args) || isFlag(args[i+1], cmdSpecs) {
				return nil, usagef("argument --%s: expected one argument", spec.name)
			}
			i++
			values = []string{args[i]}
		}
		if isGlobal {
			v := ""
			if len(values) > 0 {
				v = values[0]
			}
			if err := g.set(spec.name, v, on); err != nil {
				return nil, err
			}
			continue
		}
		if spec.kind == kindBool {
			out.params.bools[spec.name] = on
		} else {
			out.params.values[spec.name] = append(out.params.values[spec.name], values...)
		}
	}
	if out.cmd != nil && !out.help && !g.help {
		var missing []string
		for _, s := range out.cmd.flags {
			if s.required && !out.params.has(s.name) {
				missing = append(missing, "--"+s.name)
			}
		}
		if len(missing) > 0 {
			return nil, usagef("the following arguments are required: %s", strings.Join(missing, ", "))
		}
	}
	return out, nil
}

// isFlag reports whether an argument is a known flag name, so that
// "--key-id --plaintext x" is an error rather than a key named --plaintext.
func isFlag(arg string, cmdSpecs []flagSpec) bool {
	if !strings.HasPrefix(arg, "--") {
		return false
	}
	name, _, _ := strings.Cut(arg[2:], "=")
	_, _, inCmd := lookupFlag(cmdSpecs, name)
	_, _, inGlobal := lookupFlag(globalSpecs, name)
	return inCmd || inGlobal
}

// positional handles a word that is not a flag: the command, the
// subcommand of a group, or "help".
func (p *parsed) positional(word string) error {
	switch {
	case word == "help" && (p.cmd != nil || p.group != ""):
		p.help = true
	case word == "help":
		p.params.global.help = true
	case p.cmd == nil && p.group == "" && groups[word]:
		p.group = word
	case p.cmd == nil:
		name := word
		if p.group != "" {
			name = p.group + " " + word
		}
		cmd, ok := commands[name]
		if !ok {
			return usagef("invalid choice: %q; run 'kmsctl help' for the commands", name)
		}
		p.cmd, p.group = cmd, ""
	default:
		return usagef("Unknown options: %s", word)
	}
	return nil
}

// commandNames are the commands in the order help lists them.
func commandNames() []string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
