package main

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

// FuzzParseArgs feeds arbitrary command lines (words separated by NUL) to
// the parser. It must never panic; a refusal must be a command-line or
// parameter error (exit 252), except bad base64, which only the commands
// read; and a line it accepts must hold only flags of its command, each
// required flag given, and parse the same again.
func FuzzParseArgs(f *testing.F) {
	for _, seed := range []string{
		"describe-key\x00--key-id\x00k",
		"--endpoints\x00a:1,b:2\x00encrypt\x00--key-id=k\x00--plaintext\x00aGk=\x00--output\x00text",
		"list-keys\x00--limit\x000",
		"list-keys\x00--no-paginate\x00--query\x00Keys[:2].KeyId",
		"tag-resource\x00--key-id\x00k\x00--tags\x00TagKey=a,TagValue=1\x00TagKey=b,TagValue=2",
		"create-key\x00--managed\x00--no-bypass-policy-lockout-safety-check",
		"cluster\x00status\x00--endpoint-url\x00https://[::1]:7001",
		"help\x00cluster\x00status",
		"encrypt\x00help",
		"encrypt\x00--generate-cli-skeleton\x00yaml-input",
		"encrypt\x00--cli-input-json\x00{\"KeyId\":\"k\",\"Plaintext\":\"aGk=\",\"EncryptionContext\":{\"a\":\"b\"}}",
		"list-keys\x00--cli-input-yaml\x00Limit: 3",
		"--version",
		"-h",
		"generate-data-key\x00--key-id\x00k\x00--number-of-bytes\x00-1",
		"list-keys\x00--cli-connect-timeout\x005\x00--cli-read-timeout\x000\x00--color\x00off",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		t.Setenv("RAFTKMS_ENDPOINTS", "")
		args := strings.Split(line, "\x00")
		for _, a := range args {
			// No files: fuzzed file:// and fileb:// paths would read this machine's.
			if strings.Contains(a, "file://") || strings.Contains(a, "fileb://") {
				return
			}
		}
		p, err := parseArgs(args)
		if err != nil {
			if code := fail(io.Discard, err, "", nil); code != exitUsage {
				t.Fatalf("parseArgs(%q) refused with exit %d: %v", args, code, err)
			}
			return
		}
		if p.cmd == nil {
			return
		}
		for name := range p.params.values {
			if _, ok := findSpec(p.cmd.flags, name); !ok {
				t.Fatalf("parseArgs(%q) set --%s, not a flag of %s", args, name, p.cmd.name)
			}
		}
		g := p.params.global
		if !p.help && !g.help && !g.version && g.skeleton == "" {
			for _, s := range p.cmd.flags {
				if s.required && !p.params.has(s.name) {
					t.Fatalf("parseArgs(%q) lacks required --%s", args, s.name)
				}
			}
		}
		again, err := parseArgs(args)
		if err != nil || again.cmd != p.cmd {
			t.Fatalf("parseArgs(%q) is not deterministic: %v", args, err)
		}
		a, _ := json.Marshal(p.params.values)
		b, _ := json.Marshal(again.params.values)
		if string(a) != string(b) {
			t.Fatalf("parseArgs(%q) gave %s, then %s", args, a, b)
		}
		// The commands' own readers of the values refuse cleanly too.
		for _, s := range p.cmd.flags {
			var err error
			switch s.kind {
			case kindInt:
				_, err = p.params.int32(s.name)
			case kindDuration:
				_, err = p.params.seconds(s.name)
			case kindBlob:
				_, err = p.params.blob(s.name)
			case kindMap:
				_, err = p.params.context(s.name)
			}
			var oe *otherError
			if err != nil && fail(io.Discard, err, "", nil) != exitUsage && !errors.As(err, &oe) {
				t.Fatalf("--%s %q: %v is neither a parameter error nor bad base64", s.name, p.params.str(s.name), err)
			}
		}
	})
}

// FuzzQuery runs arbitrary --query expressions on an answer and prints the
// result in every output format: nothing may panic, and JSON output must
// be JSON.
func FuzzQuery(f *testing.F) {
	for _, q := range []string{"Keys[:2]", "sort_by(Keys, &KeyId)", "Keys[].{A: KeyId, B: KeyArn}", "length(Keys)",
		"Keys[?KeyId=='a'] | [0]", "max_by(Keys, &to_number(KeyId))", "`1` / `0`", "Keys[*].[KeyId, KeyArn]", "*", "@"} {
		f.Add(q)
	}
	doc := listKeysDoc{Keys: []keyListEntry{{"a", "arn:a"}, {"b", "arn:b"}, {"3", "arn:3"}}, paging: paging{Truncated: ptr(false)}}
	f.Fuzz(func(t *testing.T, q string) {
		if _, err := compileQuery(q); err != nil {
			return
		}
		for _, out := range outputFormats {
			var b strings.Builder
			g := &globals{output: out, query: q, hasQuery: true, operation: "ListKeys"}
			err := printResult(&b, doc, g)
			if err != nil {
				if code := fail(io.Discard, err, "", nil); code != exitOther {
					t.Fatalf("--query %q --output %s: exit %d: %v", q, out, code, err)
				}
				continue
			}
			if out == "json" && b.Len() > 0 && !json.Valid([]byte(b.String())) {
				t.Fatalf("--query %q printed invalid JSON %q", q, b.String())
			}
		}
	})
}
