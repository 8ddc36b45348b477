package main

import (
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/raftkms/raftkms/pki"
)

// globals are the flags every command accepts, before or after its name.
type globals struct {
	endpoints      string // --endpoints, or host:port from --endpoint-url
	endpointURL    string // --endpoint-url as given
	scheme         string // "http" or "https" from --endpoint-url; "" for --endpoints
	output         string // json, text, table, yaml or yaml-stream
	query          string
	hasQuery       bool
	binaryFormat   string // base64 or raw-in-base64-out
	staleOK        bool
	timeout        time.Duration
	connectTimeout time.Duration // --cli-connect-timeout; 0: bounded by --timeout only
	readTimeout    time.Duration // --cli-read-timeout; 0: bounded by --timeout only
	noPaginate     bool
	operation      string // the API operation called, the title of table output
	help           bool
	version        bool
	debug          bool
	color          string
	tls            pki.Files // --cert, --key, --ca: mutual TLS to a production cluster
	inputJSON      string    // --cli-input-json (maybe file://PATH)
	inputYAML      string    // --cli-input-yaml
	skeleton       string    // --generate-cli-skeleton: input, yaml-input; "" when absent
}

// globalDef is one global flag: its table entry and what it sets.
type globalDef struct {
	name string
	flagDef
	set func(g *globals, value string, on bool) error
}

// outputFormats are the --output choices, as in the AWS CLI v2.
var outputFormats = []string{"json", "text", "table", "yaml", "yaml-stream"}

// globalTable is every global flag, in the order help lists them.
// --region and --profile are accepted and ignored, so that scripts written
// for `aws kms` run as they are.
var globalTable = []globalDef{
	{"endpoints", flagDef{doc: "Node gRPC addresses, HOST:PORT,HOST:PORT; calls move between them.",
		def: "$RAFTKMS_ENDPOINTS, then 127.0.0.1:7001", example: "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"},
		func(g *globals, v string, _ bool) error {
			if strings.TrimSpace(strings.ReplaceAll(v, ",", "")) == "" {
				return usagef("argument --endpoints: expected HOST:PORT[,HOST:PORT...]")
			}
			g.endpoints, g.endpointURL, g.scheme = v, "", ""
			return nil
		}},
	{"endpoint-url", flagDef{doc: "One node as the AWS CLI names an endpoint: http://HOST:PORT (plaintext) or https://HOST:PORT " +
		"(TLS, verified with the system's roots or --ca). Replaces --endpoints.", example: "https://kms1.example.com:7001"},
		func(g *globals, v string, _ bool) error {
			scheme, hostport, err := parseEndpointURL(v)
			if err != nil {
				return err
			}
			g.endpoints, g.endpointURL, g.scheme = hostport, v, scheme
			return nil
		}},
	{"output", flagDef{doc: "The output format.", choices: outputFormats, def: "json", example: "text"},
		func(g *globals, v string, _ bool) error {
			if err := checkChoice("output", v, outputFormats); err != nil {
				return err
			}
			g.output = v
			return nil
		}},
	{"query", flagDef{doc: "A JMESPath expression applied to the answer before it is printed (jmespath.org).",
		example: "Keys[?starts_with(KeyId, 'a')].KeyId"},
		func(g *globals, v string, _ bool) error {
			if _, err := compileQuery(v); err != nil {
				return usagef("argument --query: Bad value for --query %s: %v", v, err)
			}
			g.query, g.hasQuery = v, true
			return nil
		}},
	{"cli-binary-format", flagDef{doc: "How --plaintext is read: base64, or raw-in-base64-out for plain text. Output blobs are always base64.",
		choices: []string{"base64", "raw-in-base64-out"}, def: "base64", example: "raw-in-base64-out"},
		func(g *globals, v string, _ bool) error {
			if err := checkChoice("cli-binary-format", v, []string{"base64", "raw-in-base64-out"}); err != nil {
				return err
			}
			g.binaryFormat = v
			return nil
		}},
	{"stale-ok", flagDef{kind: kindBool, doc: "Reads skip the linearizable read-index round (raftkms extension).", def: "false", example: "true"},
		func(g *globals, _ string, on bool) error { g.staleOK = on; return nil }},
	{"timeout", flagDef{kind: kindDuration, doc: "Bound on the whole command, retries included, as a Go duration (raftkms extension).",
		def: "30s", example: "5s"},
		func(g *globals, v string, _ bool) error {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return usagef("argument --timeout: %q is not a positive Go duration (like 30s)", v)
			}
			g.timeout = d
			return nil
		}},
	{"cli-connect-timeout", flagDef{kind: kindInt, doc: "Seconds to wait for a connection to a node; 0 waits as long as --timeout allows.",
		def: "0", example: "5"},
		func(g *globals, v string, _ bool) error {
			d, err := seconds("cli-connect-timeout", v)
			g.connectTimeout = d
			return err
		}},
	{"cli-read-timeout", flagDef{kind: kindInt, doc: "Seconds to wait for one answer; 0 waits as long as --timeout allows. " +
		"An attempt that runs out of it is retried.", def: "0", example: "10"},
		func(g *globals, v string, _ bool) error {
			d, err := seconds("cli-read-timeout", v)
			g.readTimeout = d
			return err
		}},
	{"no-paginate", flagDef{kind: kindBool, doc: "List commands make one call and print NextMarker and Truncated.", def: "false", example: "true"},
		func(g *globals, _ string, on bool) error { g.noPaginate = on; return nil }},
	{"ca", flagDef{doc: "PEM file of the CA that signed the nodes' certificates; turns on TLS.",
		def: "$RAFTKMS_CA", example: "certs/ca.pem"},
		func(g *globals, v string, _ bool) error { g.tls.CA = v; return nil }},
	{"ca-bundle", flagDef{doc: "The AWS CLI's name for --ca.", example: "certs/ca.pem"},
		func(g *globals, v string, _ bool) error { g.tls.CA = v; return nil }},
	{"cert", flagDef{doc: "PEM file of your client certificate, for clusters that require one (give --key too).",
		def: "$RAFTKMS_CERT", example: "certs/admin.pem"},
		func(g *globals, v string, _ bool) error { g.tls.Cert = v; return nil }},
	{"key", flagDef{doc: "PEM file of the private key of --cert.", def: "$RAFTKMS_KEY", example: "certs/admin-key.pem"},
		func(g *globals, v string, _ bool) error { g.tls.Key = v; return nil }},
	{"cli-input-json", flagDef{doc: "The command's parameters as a JSON object (see --generate-cli-skeleton); " +
		"file://PATH reads it from a file. Flags on the command line win.", param: "-", example: "file://encrypt.json"},
		func(g *globals, v string, _ bool) error { g.inputJSON = v; return nil }},
	{"cli-input-yaml", flagDef{doc: "The same as --cli-input-json, in YAML.", param: "-", example: "file://encrypt.yaml"},
		func(g *globals, v string, _ bool) error { g.inputYAML = v; return nil }},
	{"generate-cli-skeleton", flagDef{doc: "Print the command's parameters as a JSON (input) or YAML (yaml-input) template " +
		"for --cli-input-json or --cli-input-yaml, and call nothing.", choices: []string{"input", "yaml-input"}, def: "input", example: "input"},
		func(g *globals, v string, _ bool) error {
			if err := checkChoice("generate-cli-skeleton", v, []string{"input", "yaml-input"}); err != nil {
				return err
			}
			g.skeleton = v
			return nil
		}},
	{"debug", flagDef{kind: kindBool, doc: "Print each request sent and each answer's status to stderr. Binary fields " +
		"(plaintext, ciphertext, key material) are printed only as their length.", def: "false", example: "true"},
		func(g *globals, _ string, on bool) error { g.debug = on; return nil }},
	{"color", flagDef{doc: "Accepted for the AWS CLI's sake; kmsctl prints no colour.", choices: []string{"on", "off", "auto"}, def: "auto", example: "off"},
		func(g *globals, v string, _ bool) error {
			if err := checkChoice("color", v, []string{"on", "off", "auto"}); err != nil {
				return err
			}
			g.color = v
			return nil
		}},
	{"no-cli-pager", flagDef{kind: kindBool, doc: "Accepted for the AWS CLI's sake; kmsctl never pages.", def: "true", example: "true"},
		func(*globals, string, bool) error { return nil }},
	{"region", flagDef{doc: "Accepted and ignored: a raftkms cluster has no regions.", example: "us-east-1"},
		func(*globals, string, bool) error { return nil }},
	{"profile", flagDef{doc: "Accepted and ignored: identities come from --cert.", example: "default"},
		func(*globals, string, bool) error { return nil }},
	{"version", flagDef{kind: kindBool, doc: "Print kmsctl's version and exit.", example: "true"},
		func(g *globals, _ string, on bool) error { g.version = on; return nil }},
	{"help", flagDef{kind: kindBool, doc: "Print help (also: kmsctl help, kmsctl COMMAND help).", example: "true"},
		func(g *globals, _ string, on bool) error { g.help = on; return nil }},
}

// globalSpecs are the global flags as the parser sees them.
var globalSpecs = func() []flagSpec {
	out := make([]flagSpec, len(globalTable))
	for i, d := range globalTable {
		out[i] = flagSpec{name: d.name, flagDef: d.flagDef}
	}
	return out
}()

func findGlobal(name string) *globalDef {
	for i := range globalTable {
		if globalTable[i].name == name {
			return &globalTable[i]
		}
	}
	return nil
}

func defaultGlobals() *globals {
	g := &globals{output: "json", binaryFormat: "base64", timeout: 30 * time.Second, color: "auto"}
	g.endpoints = os.Getenv("RAFTKMS_ENDPOINTS")
	g.tls = pki.Files{CA: os.Getenv("RAFTKMS_CA"), Cert: os.Getenv("RAFTKMS_CERT"), Key: os.Getenv("RAFTKMS_KEY")}
	if g.endpoints == "" {
		g.endpoints = "127.0.0.1:7001"
	}
	return g
}

func (g *globals) set(name, value string, on bool) error {
	d := findGlobal(name)
	if d == nil {
		return usagef("Unknown options: --%s", name)
	}
	return d.set(g, value, on)
}

func checkChoice(flag, v string, choices []string) error {
	for _, c := range choices {
		if v == c {
			return nil
		}
	}
	return usagef("argument --%s: Invalid choice, valid choices are:\n\n%s", flag, strings.Join(choices, " | "))
}

// seconds reads the AWS CLI's timeouts: whole seconds, 0 for none.
func seconds(flag, v string) (time.Duration, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
	if err != nil || n < 0 {
		return 0, usagef("argument --%s: invalid int value: '%s'", flag, v)
	}
	return time.Duration(n) * time.Second, nil
}

// parseEndpointURL reads --endpoint-url: http or https, a host and a port
// (no path), as the AWS CLI takes a service endpoint.
func parseEndpointURL(v string) (scheme, hostport string, err error) {
	scheme, rest, ok := strings.Cut(v, "://")
	if !ok || (scheme != "http" && scheme != "https") {
		return "", "", usagef("argument --endpoint-url: %q is not http://HOST:PORT or https://HOST:PORT", v)
	}
	rest = strings.TrimSuffix(rest, "/")
	if rest == "" || strings.ContainsAny(rest, "/?#@ ") {
		return "", "", usagef("argument --endpoint-url: %q is not http://HOST:PORT or https://HOST:PORT", v)
	}
	host, port, found := strings.Cut(rest, ":")
	if strings.HasPrefix(rest, "[") { // [::1]:7001
		i := strings.Index(rest, "]")
		if i < 0 {
			return "", "", usagef("argument --endpoint-url: %q has an unclosed [", v)
		}
		host, port, found = rest[:i+1], strings.TrimPrefix(rest[i+1:], ":"), strings.HasPrefix(rest[i+1:], ":")
	}
	if host == "" {
		return "", "", usagef("argument --endpoint-url: %q has no host", v)
	}
	if !found {
		// The AWS CLI's default ports: 80 and 443.
		port = map[string]string{"http": "80", "https": "443"}[scheme]
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return "", "", usagef("argument --endpoint-url: %q has no valid port", v)
	}
	return scheme, host + ":" + port, nil
}
