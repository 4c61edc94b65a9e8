package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// runVersion implements `liveroom version` and `liveroom --version`: the
// module version and the commit the binary was built from, as the Go
// toolchain recorded them.
func runVersion(_ context.Context, args []string, stdout, _ io.Writer) error {
	if len(args) > 0 && args[0] != "-h" && args[0] != "--help" && args[0] != "-help" {
		return fmt.Errorf("version: unexpected argument %q", args[0])
	}
	if len(args) > 0 {
		fmt.Fprintln(stdout, "usage: liveroom version\n\nPrints the module version, the commit and the Go version this binary was built with.")
		return nil
	}
	bi, ok := debug.ReadBuildInfo()
	_, err := fmt.Fprintln(stdout, versionLine(bi, ok))
	return err
}

// versionLine renders build info: "liveroom v1.2.3 (commit 0123456789ab,
// 2026-01-02T03:04:05Z, modified) go1.26 linux/amd64".
func versionLine(bi *debug.BuildInfo, ok bool) string {
	v, vcs := "(unknown)", ""
	if ok {
		v = bi.Main.Version
		if v == "" {
			v = "(devel)"
		}
		var rev, at, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if rev != "" {
			vcs = " (commit " + rev[:min(12, len(rev))]
			if at != "" {
				vcs += ", " + at
			}
			if modified == "true" {
				vcs += ", modified"
			}
			vcs += ")"
		}
	}
	return fmt.Sprintf("liveroom %s%s %s %s/%s", v, vcs, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
