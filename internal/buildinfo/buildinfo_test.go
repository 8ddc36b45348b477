package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestLine(t *testing.T) {
	line := Line("kmsd")
	if !strings.HasPrefix(line, "kmsd/") {
		t.Fatalf("%q does not start with the program name", line)
	}
	if !strings.Contains(line, runtime.Version()) || !strings.HasSuffix(line, runtime.GOOS+"/"+runtime.GOARCH) {
		t.Fatalf("%q lacks the Go version or platform", line)
	}
	info := Read()
	if info.Version == "" || info.Go != runtime.Version() {
		t.Fatalf("Read() = %+v", info)
	}
	if info.Commit != "" && !strings.Contains(line, "commit/"+info.Commit[:min(12, len(info.Commit))]) {
		t.Fatalf("%q lacks the commit %s", line, info.Commit)
	}
}
