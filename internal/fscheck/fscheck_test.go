package fscheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWritable(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, []byte("x"), 0o600)
	for _, c := range []struct {
		dir  string
		want string // "" is fine
	}{
		{dir, ""},
		{filepath.Join(dir, "new", "deeper"), ""},
		{file, "is not a directory"},
		{filepath.Join(file, "under"), "not a directory"},
		{"/proc/nope", "cannot be made"},
	} {
		err := Writable(c.dir)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("Writable(%s) = %v, want %q", c.dir, err, c.want)
		}
	}
	// Nothing was left behind, and the missing directory was not made.
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("Writable left %d entries in %s", len(entries), dir)
	}
}

func TestReadable(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, []byte("x"), 0o600)
	if err := ReadableDir(dir); err != nil {
		t.Error(err)
	}
	if err := ReadableDir(file); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Error(err)
	}
	if err := ReadableDir(filepath.Join(dir, "nope")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Error(err)
	}
	if err := ReadableFile(file); err != nil {
		t.Error(err)
	}
	if err := ReadableFile(dir); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Error(err)
	}
}
