// Package buildinfo says which mailflow a binary is: its version, the
// commit and date it was built from, and the Go that built it, as the Go
// toolchain stamped them in the binary (runtime/debug.ReadBuildInfo), so
// that a bug report can name the exact source.
package buildinfo

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// Info is what a binary knows of how it was built.
type Info struct {
	// Version is the one given at link time if any, else the module
	// version: a release's tag ("v1.2.0") for go install …@v1.2.0, a
	// pseudo-version ("v0.0.0-20261101120000-2ad98d9abcde+dirty") for a
	// build in a git checkout, "(devel)" when Go knew neither.
	Version string
	// Commit is the VCS revision built from, "" when unknown (not built
	// in a checkout, or with -buildvcs=false).
	Commit string
	// Date is the commit's date (RFC 3339), not the build's.
	Date string
	// Modified: the checkout had changes not committed (or files not
	// tracked) when it was built.
	Modified bool
	// Go is the toolchain's version and the target, "go1.26.8 linux/amd64".
	Go string
}

// Read returns this binary's Info. linked is the version given at link
// time (-ldflags "-X main.version=…"); when not empty it is the Version,
// as a packager that sets it knows the release better than the checkout.
func Read(linked string) Info {
	bi, _ := debug.ReadBuildInfo()
	return fromBuildInfo(linked, bi)
}

// fromBuildInfo is Read on a given build info, which may be nil.
func fromBuildInfo(linked string, bi *debug.BuildInfo) Info {
	info := Info{Version: linked}
	if bi == nil {
		bi = &debug.BuildInfo{}
	}
	if info.Version == "" {
		info.Version = bi.Main.Version
	}
	if info.Version == "" {
		info.Version = "(devel)"
	}
	var goos, goarch string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Commit = s.Value
		case "vcs.time":
			info.Date = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	info.Go = bi.GoVersion
	if goos != "" {
		info.Go += " " + goos + "/" + goarch
	}
	return info
}

// String is what "mailflow version" prints: the version on the first line
// (as "mailflow --version" prints it), then the commit, its date and Go.
func (i Info) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "mailflow %s\n", i.Version)
	switch {
	case i.Commit == "":
		b.WriteString("commit  unknown (not built in a git checkout, or built with -buildvcs=false)\n")
	case i.Modified:
		fmt.Fprintf(&b, "commit  %s (modified: built with changes not committed)\n", i.Commit)
	default:
		fmt.Fprintf(&b, "commit  %s\n", i.Commit)
	}
	if i.Date != "" {
		fmt.Fprintf(&b, "date    %s\n", i.Date)
	}
	if i.Go != "" {
		fmt.Fprintf(&b, "go      %s\n", i.Go)
	}
	return b.String()
}
