package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cliCase is one command line and what it must give: the exit code, and
// strings that stderr (or stdout) must contain.
type cliCase struct {
	name   string
	args   []string
	code   int
	stderr []string
	stdout []string
}

func (tc cliCase) check(t *testing.T) (stdout, stderr string) {
	t.Helper()
	code, out, errOut := runCLI(tc.args...)
	if code != tc.code {
		t.Fatalf("kmsctl %q: exit %d, want %d\nstdout %q\nstderr %q", tc.args, code, tc.code, out, errOut)
	}
	for _, w := range tc.stderr {
		if !strings.Contains(errOut, w) {
			t.Errorf("kmsctl %q: stderr %q lacks %q", tc.args, errOut, w)
		}
	}
	for _, w := range tc.stdout {
		if !strings.Contains(out, w) {
			t.Errorf("kmsctl %q: stdout %q lacks %q", tc.args, out, w)
		}
	}
	if tc.code != exitOK && out != "" {
		t.Errorf("kmsctl %q failed but printed %q on stdout", tc.args, out)
	}
	if tc.code == exitOK && errOut != "" {
		t.Errorf("kmsctl %q succeeded but printed %q on stderr", tc.args, errOut)
	}
	return out, errOut
}

// noCluster points kmsctl at an address where nothing listens, so that a
// test that should never connect cannot reach someone's dev cluster on the
// default port either.
func noCluster(t *testing.T) string {
	t.Helper()
	dead := deadAddr(t)
	t.Setenv("RAFTKMS_ENDPOINTS", dead)
	return dead
}

// TestUsageErrors covers what kmsctl decides without a cluster: command
// line errors and AWS parameter validation exit 252, bad base64 exits 255
// (as in the AWS CLI), help and skeletons exit 0.
func TestUsageErrors(t *testing.T) {
	noCluster(t)
	dir := t.TempDir()
	badB64 := filepath.Join(dir, "bad.b64")
	if err := os.WriteFile(badB64, []byte("this is not base64!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	input := filepath.Join(dir, "in.json")
	if err := os.WriteFile(input, []byte(`{"KeyId": "k", "Plaintext": "aGk=", "GrantTokens": ["t"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	banner := "usage: kmsctl [options]"
	for _, tc := range []cliCase{
		{"no command", nil, exitUsage, []string{banner, "kmsctl: error: the following arguments are required: command"}, nil},
		{"unknown command", []string{"frobnicate-key"}, exitUsage, []string{banner, `argument command: Invalid choice "frobnicate-key"`}, nil},
		{"missing required", []string{"describe-key"}, exitUsage, []string{"the following arguments are required: --key-id"}, nil},
		{"missing two", []string{"create-alias"}, exitUsage, []string{"required: --alias-name, --target-key-id"}, nil},
		{"unknown option", []string{"describe-key", "--key-id", "k", "--bogus"}, exitUsage, []string{"\nUnknown options: --bogus\n"}, nil},
		{"command flag before command", []string{"--key-id", "k", "describe-key"}, exitUsage, []string{"Unknown options: --key-id"}, nil},
		{"stray word", []string{"describe-key", "--key-id", "k", "extra"}, exitUsage, []string{"Unknown options: extra"}, nil},
		{"flag without value", []string{"describe-key", "--key-id"}, exitUsage, []string{"argument --key-id: expected one argument"}, nil},
		{"group without subcommand", []string{"cluster"}, exitUsage, []string{"cluster needs a subcommand: join, remove"}, nil},
		{"limit 0", []string{"list-keys", "--limit", "0"}, exitUsage,
			[]string{"\nParameter validation failed:\nInvalid range for parameter Limit, value: 0, valid range: 1-inf\n"}, nil},
		{"limit -1", []string{"list-aliases", "--limit", "-1"}, exitUsage, []string{"Invalid range for parameter Limit, value: -1"}, nil},
		{"page-size 0", []string{"list-keys", "--page-size", "0"}, exitUsage, []string{"Invalid range for parameter PageSize"}, nil},
		{"number-of-bytes 0", []string{"generate-data-key", "--key-id", "k", "--number-of-bytes", "0"}, exitUsage,
			[]string{"Invalid range for parameter NumberOfBytes, value: 0, valid range: 1-inf"}, nil},
		{"pending window 0", []string{"schedule-key-deletion", "--key-id", "k", "--pending-window-in-days", "0"}, exitUsage,
			[]string{"Invalid range for parameter PendingWindowInDays"}, nil},
		{"limit not a number", []string{"list-keys", "--limit", "ten"}, exitUsage, []string{"Error parsing parameter '--limit'"}, nil},
		{"bad base64", []string{"encrypt", "--key-id", "k", "--plaintext", "not base64!"}, exitOther, []string{"\nInvalid base64: \"not base64!\""}, nil},
		{"bad base64 in a file", []string{"decrypt", "--ciphertext-blob", "file://" + badB64}, exitOther, []string{"Invalid base64:"}, nil},
		{"missing paramfile", []string{"encrypt", "--key-id", "k", "--plaintext", "fileb://" + filepath.Join(dir, "nope")}, exitUsage,
			[]string{"Error parsing parameter '--plaintext': Unable to load paramfile fileb://"}, nil},
		{"bad encryption context", []string{"encrypt", "--key-id", "k", "--plaintext", "aGk=", "--encryption-context", "novalue"}, exitUsage,
			[]string{"Error parsing parameter '--encryption-context'"}, nil},
		{"bad output", []string{"list-keys", "--output", "xml"}, exitUsage, []string{"argument --output: Invalid choice", "yaml-stream"}, nil},
		{"bad query", []string{"list-keys", "--query", "Keys["}, exitUsage, []string{"Bad value for --query Keys["}, nil},
		{"bad endpoint-url", []string{"list-keys", "--endpoint-url", "ftp://h:1"}, exitUsage, []string{"argument --endpoint-url"}, nil},
		{"endpoint-url with a path", []string{"list-keys", "--endpoint-url", "http://h:1/kms"}, exitUsage, []string{"argument --endpoint-url"}, nil},
		{"bad connect timeout", []string{"list-keys", "--cli-connect-timeout", "soon"}, exitUsage, []string{"argument --cli-connect-timeout"}, nil},
		{"bad color", []string{"list-keys", "--color", "purple"}, exitUsage, []string{"argument --color: Invalid choice"}, nil},
		{"bad timeout", []string{"list-keys", "--timeout", "0s"}, exitUsage, []string{"argument --timeout"}, nil},
		{"bad cli-input-json", []string{"encrypt", "--cli-input-json", "{bad"}, exitUsage,
			[]string{"Error parsing parameter '--cli-input-json': Invalid JSON"}, nil},
		{"unknown input field", []string{"encrypt", "--cli-input-json", `{"KeyId": "k", "Bogus": 1}`}, exitUsage,
			[]string{`Unknown parameter in input: "Bogus", must be one of: KeyId, Plaintext`}, nil},
		{"wrong input type", []string{"encrypt", "--cli-input-json", `{"KeyId": 7, "Plaintext": "aGk="}`}, exitUsage,
			[]string{"Invalid type for parameter KeyId"}, nil},
		{"input limit 0", []string{"list-keys", "--cli-input-json", `{"Limit": 0}`}, exitUsage,
			[]string{"Invalid range for parameter Limit, value: 0"}, nil},
		{"input lacks a required field", []string{"encrypt", "--cli-input-json", `{"KeyId": "k"}`}, exitUsage,
			[]string{"required: --plaintext"}, nil},
		{"both inputs", []string{"encrypt", "--cli-input-json", "{}", "--cli-input-yaml", "{}"}, exitUsage, []string{"not both"}, nil},
		{"both rotation periods", []string{"enable-key-rotation", "--key-id", "k", "--rotation-period-in-days", "90", "--rotation-period", "2s"},
			exitUsage, []string{"not both"}, nil},
		{"negative max decryption versions", []string{"enable-key-rotation", "--key-id", "k", "--max-decryption-versions", "-1"},
			exitUsage, []string{"MaxDecryptionVersions", "0-inf"}, nil},

		{"help", []string{"help"}, exitOK, nil, []string{"GLOBAL OPTIONS", "--endpoint-url", "COMMANDS", "encrypt", "EXIT CODES"}},
		{"--help", []string{"--help"}, exitOK, nil, []string{"COMMANDS"}},
		{"group help", []string{"cluster", "help"}, exitOK, nil, []string{"cluster status"}},
		{"version", []string{"--version"}, exitOK, nil, []string{"kmsctl/", "go1."}},
		{"skeleton", []string{"encrypt", "--generate-cli-skeleton"}, exitOK, nil,
			[]string{`"KeyId": ""`, `"Plaintext": null`, `"EncryptionContext": {`, `"EncryptionAlgorithm": "SYMMETRIC_DEFAULT"`}},
		{"yaml skeleton", []string{"list-keys", "--generate-cli-skeleton", "yaml-input"}, exitOK, nil, []string{"Limit: 0\n", "Marker: \"\"\n"}},
		{"aws flags accepted", []string{"list-keys", "--no-cli-pager", "--color", "off", "--cli-read-timeout", "5", "--cli-connect-timeout", "5",
			"--region", "eu-west-1", "--profile", "p", "--generate-cli-skeleton"}, exitOK, nil, []string{`"Limit": 0`}},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.check(t) })
	}
	// The input file fills the flags: the skeleton of the command line
	// read back parses.
	p, err := parseArgs([]string{"encrypt", "--cli-input-json", "file://" + input, "--key-id", "from-flag"})
	if err != nil {
		t.Fatal(err)
	}
	if p.params.str("key-id") != "from-flag" || p.params.str("plaintext") != "aGk=" || p.params.list("grant-tokens")[0] != `["t"]` {
		t.Fatalf("--cli-input-json: %v", p.params.values)
	}
}

// TestHelpPages checks every command's page, reached the three ways,
// against the flag table: each flag is there with its type, and the
// page's example parses.
func TestHelpPages(t *testing.T) {
	noCluster(t)
	for _, name := range commandNames() {
		c := commands[name]
		words := strings.Fields(name)
		var pages []string
		for _, args := range [][]string{
			append(append([]string{}, words...), "help"),
			append([]string{"help"}, words...),
			append(append([]string{}, words...), "--help"),
		} {
			code, out, errOut := runCLI(args...)
			if code != exitOK || errOut != "" {
				t.Fatalf("kmsctl %q: exit %d, %q", args, code, errOut)
			}
			pages = append(pages, out)
		}
		if pages[0] != pages[1] || pages[0] != pages[2] {
			t.Errorf("%s: the three ways to ask give different pages", name)
		}
		page := pages[0]
		if !strings.HasPrefix(page, "NAME\n  kmsctl "+name+" - "+c.summary) {
			t.Errorf("%s: page starts %q", name, page[:min(len(page), 80)])
		}
		for _, f := range c.flags {
			req := "optional"
			if f.required {
				req = "required"
			}
			entry := "  --" + f.name + " (" + f.kind.typeName() + ", " + req + ")\n      " + f.doc + "\n"
			if !strings.Contains(page, entry) {
				t.Errorf("%s: page lacks the entry %q", name, entry)
			}
			if f.doc == "" || (f.kind != kindBool && f.example == "") {
				t.Errorf("%s --%s: no help text or example in flagCatalog", name, f.name)
			}
			for _, choice := range f.choices {
				if !strings.Contains(page, choice) {
					t.Errorf("%s --%s: page lacks allowed value %s", name, f.name, choice)
				}
			}
		}
		ex := page[strings.Index(page, "EXAMPLE\n  ")+len("EXAMPLE\n  "):]
		ex = ex[:strings.Index(ex, "\n")]
		args := splitShell(t, ex)[1:]
		if _, err := parseArgs(args); err != nil {
			t.Errorf("%s: the example %q does not parse: %v", name, ex, err)
		}
	}
}

// splitShell splits a command line of plain and single-quoted words.
func splitShell(t *testing.T, s string) []string {
	t.Helper()
	var out []string
	var cur strings.Builder
	in, have := false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'':
			in, have = !in, true
		case c == ' ' && !in:
			if have {
				out = append(out, cur.String())
			}
			cur.Reset()
			have = false
		default:
			cur.WriteByte(c)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// TestSkeletonRoundTrip feeds every command's skeleton back through
// --cli-input-json: each field must be one the command knows.
func TestSkeletonRoundTrip(t *testing.T) {
	noCluster(t)
	for _, name := range commandNames() {
		code, out, errOut := runCLI(append(strings.Fields(name), "--generate-cli-skeleton")...)
		if code != exitOK {
			t.Fatalf("%s skeleton: %d %q", name, code, errOut)
		}
		var doc map[string]any
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("%s skeleton is not JSON: %v\n%s", name, err, out)
		}
		c := commands[name]
		if len(doc) != len(inputFlags(c)) {
			t.Errorf("%s skeleton has %d fields, the command %d", name, len(doc), len(inputFlags(c)))
		}
		p := &parsed{cmd: c, params: newParams(defaultGlobals())}
		p.params.cmd = c
		p.params.global.inputJSON = out
		if err := fillFromInput(p.params); err != nil {
			t.Errorf("%s: its own skeleton is refused: %v", name, err)
		}
	}
}
