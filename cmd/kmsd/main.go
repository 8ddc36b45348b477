// Command kmsd runs raftkms nodes.
//
//	kmsd dev      a whole cluster in one process on loopback (insecure, for trying it out)
//	kmsd serve    one node of a real cluster
//	kmsd gen-root-key
//	kmsd health   exit 0 when a node is serving
//	kmsd k8s-plugin  a Kubernetes KMS v2 plugin (docs/kubernetes.md)
//
// Every flag may also come from a RAFTKMS_* environment variable: --node-id
// from RAFTKMS_NODE_ID, --min-rotation-period from RAFTKMS_MIN_ROTATION_PERIOD.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/raftkms/raftkms/internal/buildinfo"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		usage()
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "dev":
		return runDev(rest)
	case "serve":
		return runServe(rest)
	case "gen-root-key":
		return runGenRootKey(rest)
	case "seal-root-key":
		return runSealRootKey(rest)
	case "health":
		return runHealth(rest)
	case "gen-certs":
		return runGenCerts(rest)
	case "k8s-plugin":
		return runK8sPlugin(rest)
	case "help", "-h", "--help":
		usage()
		return 0
	case "version", "--version", "-version":
		fmt.Println(buildinfo.Line("kmsd"))
		return 0
	}
	fmt.Fprintf(os.Stderr, "kmsd: unknown command %q\n", cmd)
	usage()
	return 2
}

func usage() {
	fmt.Fprint(os.Stderr, `usage: kmsd COMMAND [flags]

commands:
  dev           run a whole cluster (3 nodes by default) in one process on 127.0.0.1
  serve         run one node of a cluster
  gen-root-key  print a new cluster root key (base64) to stdout, or -o FILE to create FILE (mode 0600)
  seal-root-key seal a root key file under a passphrase (scrypt, AES-256-GCM): --root-key-file F --passphrase-file P --out F2;
                kmsd serve reads it with --root-key-passphrase-file P
  health        exit 0 when the node at --grpc-addr is serving
  gen-certs     make a CA and node and client certificates (mutual TLS)
  k8s-plugin    serve the Kubernetes KMS v2 API on a unix socket, backed by a cluster key
  version       print kmsd's version (also --version)

Run "kmsd COMMAND -h" for the flags of a command. Every flag may also be set
with a RAFTKMS_* environment variable (--node-id from RAFTKMS_NODE_ID), and
those of serve from a YAML file with --config FILE (the command line wins
over the environment, which wins over the file).
`)
}

// parseFlags parses args, then fills every flag not given on the command line
// from its RAFTKMS_* environment variable, then, when the flag set has a
// --config flag and it names a file, every flag still unset from that file:
// the command line wins over the environment, which wins over the file.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		env := envName(f.Name)
		if v, ok := os.LookupEnv(env); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %w", env, e)
			}
			set[f.Name] = true
		}
	})
	if err != nil {
		return err
	}
	if f := fs.Lookup(configFlag); f != nil && f.Value.String() != "" {
		return applyConfigFile(fs, f.Value.String(), set)
	}
	return nil
}

// envName is the environment variable of a flag: node-id → RAFTKMS_NODE_ID.
func envName(flagName string) string {
	return "RAFTKMS_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}
