package main

import (
	"sort"
	"strconv"
	"strings"
)

// params are the parsed flags of one command.
type params struct {
	cmd    *command
	values map[string][]string // as given; a list flag may hold many
	bools  map[string]bool
	global *globals
	args   []string // positional arguments of a command that takes them (command.args)
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

// int32 is an integer flag's value, 0 when absent. A value below the
// flag's minimum fails as AWS's parameter validation fails it.
func (p *params) int32(name string) (int32, error) {
	if !p.has(name) {
		return 0, nil
	}
	v := strings.TrimSpace(p.str(name))
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0, paramf("Error parsing parameter '--%s': invalid literal for int() with base 10: '%s'", name, p.str(name))
	}
	if d, ok := p.spec(name); ok && d.hasMin && n < d.min {
		return 0, validationf("Invalid range for parameter %s, value: %d, valid range: %d-inf", paramName(name, flagDef{}), n, d.min)
	}
	return int32(n), nil
}

func (p *params) spec(name string) (flagSpec, bool) {
	if p.cmd == nil {
		return flagSpec{}, false
	}
	return findSpec(p.cmd.flags, name)
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
		return nil, paramf("Error parsing parameter '--%s': %v", name, err)
	}
	return m, nil
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
	help   bool     // "help" given after the command
	topic  []string // words after "kmsctl help": the command to explain
}

// parseArgs reads a command line in one pass. Global flags are recognised
// anywhere; a command's own flags only after its name, as in the AWS CLI.
// Then --cli-input-json or --cli-input-yaml fill the flags not given, and
// required flags are checked.
func parseArgs(args []string) (*parsed, error) {
	g := defaultGlobals()
	out := &parsed{params: newParams(g)}
	for i := 0; i < len(args); i++ {
		tok := args[i]
		if tok == "-h" {
			tok = "--help"
		}
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
				return nil, usagef("Unknown options: %s (a command's own flags go after the command name)", tok)
			}
			return nil, usagef("Unknown options: %s", tok)
		}
		var values []string
		switch {
		case spec.kind == kindBool:
			if hasValue {
				b, err := strconv.ParseBool(value)
				if err != nil {
					return nil, usagef("argument --%s: expected no value or true/false, got %q", spec.name, value)
				}
				on = on && b
			}
		case hasValue:
			values = []string{value}
		case spec.name == "generate-cli-skeleton":
			// Its value is optional, as in the AWS CLI.
			values = []string{"input"}
			if i+1 < len(args) && (args[i+1] == "input" || args[i+1] == "yaml-input" || args[i+1] == "output") {
				i++
				values[0] = args[i]
			}
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
	out.params.cmd = out.cmd
	if out.cmd == nil || out.help || g.help || g.version {
		return out, nil
	}
	if g.inputJSON != "" && g.inputYAML != "" {
		return nil, usagef("give --cli-input-json or --cli-input-yaml, not both")
	}
	if err := fillFromInput(out.params); err != nil {
		return nil, err
	}
	if g.skeleton != "" {
		return out, nil
	}
	var missing []string
	for _, s := range out.cmd.flags {
		if s.required && !out.params.has(s.name) {
			missing = append(missing, "--"+s.name)
		}
	}
	missing = append(missing, out.cmd.args[len(out.params.args):]...)
	if len(missing) > 0 {
		return nil, usagef("the following arguments are required: %s", strings.Join(missing, ", "))
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
// subcommand of a group, "help", or the topic of "kmsctl help TOPIC".
func (p *parsed) positional(word string) error {
	g := p.params.global
	switch {
	case word == "help" && (p.cmd != nil || p.group != ""):
		p.help = true
	case word == "help" && !g.help:
		g.help = true
	case g.help && p.cmd == nil && p.group == "" && len(p.topic) == 0 && word != "help":
		// "kmsctl help encrypt", "kmsctl help cluster status": the words name
		// the command, read below as if "help" came after it.
		p.topic = append(p.topic, word)
		return p.command(word)
	case p.cmd == nil:
		return p.command(word)
	case len(p.params.args) == 0 && commands[p.cmd.name+" "+word] != nil:
		// A command's own subcommand: "cluster snapshot save".
		p.cmd = commands[p.cmd.name+" "+word]
	case len(p.params.args) < len(p.cmd.args):
		p.params.args = append(p.params.args, word)
	default:
		return usagef("Unknown options: %s", word)
	}
	return nil
}

// command takes a word as the command (or group, or subcommand) name.
func (p *parsed) command(word string) error {
	if p.cmd == nil && p.group == "" && groups[word] {
		p.group = word
		return nil
	}
	name := word
	if p.group != "" {
		name = p.group + " " + word
	}
	cmd, ok := commands[name]
	if !ok {
		return usagef("argument command: Invalid choice %q; run 'kmsctl help' for the commands", name)
	}
	p.cmd, p.group = cmd, ""
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
