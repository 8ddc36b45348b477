package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// configFlag names the flag that points at a config file.
const configFlag = "config"

// applyConfigFile sets every flag named in a YAML config file that neither
// the command line nor the environment set. The file is a mapping from flag
// names (without dashes) to values:
//
//	node-id: kms1
//	grpc-addr: 10.0.0.1:7001
//	peers: [kms1=10.0.0.1:7101, kms2=10.0.0.2:7101, kms3=10.0.0.3:7101]
//	raft-heartbeat-timeout: 1s
//
// A list becomes the comma-separated value of its flag. An unknown name is
// an error, so a misspelt setting never passes silently.
func applyConfigFile(fs *flag.FlagSet, path string, set map[string]bool) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	names := make([]string, 0, len(doc))
	for name := range doc {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if name == configFlag {
			return fmt.Errorf("config file %s: %q cannot be set in a config file", path, name)
		}
		if fs.Lookup(name) == nil {
			return fmt.Errorf("config file %s: unknown setting %q (settings are the flags of %s)", path, name, fs.Name())
		}
		if set[name] {
			continue // the command line or the environment wins
		}
		v, err := configValue(doc[name])
		if err != nil {
			return fmt.Errorf("config file %s: %s: %w", path, name, err)
		}
		if err := fs.Set(name, v); err != nil {
			return fmt.Errorf("config file %s: %s: %w", path, name, err)
		}
	}
	return nil
}

// configValue turns a YAML value into a flag's text.
func configValue(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", errors.New("no value")
	case string:
		return x, nil
	case bool, int, int64, uint64, float64:
		return fmt.Sprint(x), nil
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			s, err := configValue(e)
			if err != nil {
				return "", err
			}
			if strings.Contains(s, ",") {
				return "", fmt.Errorf("list item %q holds a comma", s)
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), nil
	}
	return "", fmt.Errorf("a %T is not a flag value (use a string, number, boolean or list)", v)
}
