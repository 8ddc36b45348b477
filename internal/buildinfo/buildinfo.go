// Package buildinfo describes the running raftkms binary: its module
// version, the commit it was built from and the Go version, from the
// build information the Go toolchain embeds.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Info is what the binary knows about its build.
type Info struct {
	Version  string // module version, "(devel)" for a build from a work tree
	Commit   string // VCS revision, "" when built without VCS information
	Modified bool   // the work tree had uncommitted changes
	Go       string // Go version the binary was built with
}

// Read returns the binary's build information.
func Read() Info {
	info := Info{Version: "(devel)", Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Commit = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	return info
}

// Line is the one-line version of program, as `aws --version` prints its
// own: program/VERSION [commit/REV[-modified]] GOVERSION OS/ARCH.
func Line(program string) string {
	info := Read()
	line := program + "/" + info.Version
	if c := info.Commit; c != "" {
		if len(c) > 12 {
			c = c[:12]
		}
		line += " commit/" + c
		if info.Modified {
			line += "-modified"
		}
	}
	return fmt.Sprintf("%s %s %s/%s", line, info.Go, runtime.GOOS, runtime.GOARCH)
}
