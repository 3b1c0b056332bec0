package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	checkout := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/mailflow/mailflow", Version: "v0.0.0-20261101120000-2ad98d9abcde+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "amd64"},
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "2ad98d9abcdef0123456789abcdef0123456789a"},
			{Key: "vcs.time", Value: "2026-11-01T12:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	release := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.0"}}
	for _, tc := range []struct {
		name, linked string
		bi           *debug.BuildInfo
		want         Info
		lines        []string
	}{
		{"checkout", "", checkout,
			Info{Version: "v0.0.0-20261101120000-2ad98d9abcde+dirty", Commit: "2ad98d9abcdef0123456789abcdef0123456789a",
				Date: "2026-11-01T12:00:00Z", Modified: true, Go: "go1.26.8 linux/amd64"},
			[]string{"mailflow v0.0.0-20261101120000-2ad98d9abcde+dirty",
				"commit  2ad98d9abcdef0123456789abcdef0123456789a (modified: built with changes not committed)",
				"date    2026-11-01T12:00:00Z", "go      go1.26.8 linux/amd64"}},
		{"linked version wins", "1.3.0", checkout,
			Info{Version: "1.3.0", Commit: "2ad98d9abcdef0123456789abcdef0123456789a",
				Date: "2026-11-01T12:00:00Z", Modified: true, Go: "go1.26.8 linux/amd64"}, nil},
		{"go install of a release", "", release, Info{Version: "v1.2.0", Go: "go1.26.8"},
			[]string{"mailflow v1.2.0", "commit  unknown (not built in a git checkout, or built with -buildvcs=false)", "go      go1.26.8"}},
		{"no build info", "", nil, Info{Version: "(devel)"}, nil},
		{"devel", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, Info{Version: "(devel)"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := fromBuildInfo(tc.linked, tc.bi)
			if got != tc.want {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
			if tc.lines != nil {
				if s, want := got.String(), strings.Join(tc.lines, "\n")+"\n"; s != want {
					t.Fatalf("String:\n%s\nwant:\n%s", s, want)
				}
			}
		})
	}
}
