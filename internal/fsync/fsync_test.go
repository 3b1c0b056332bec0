package fsync

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReplaceWritesWholeOrNothing(t *testing.T) {
	dir := t.TempDir()
	tmp, path := filepath.Join(dir, "x.tmp"), filepath.Join(dir, "x")
	if err := Replace(tmp, path, func(w io.Writer) error { _, err := io.WriteString(w, "one"); return err }); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "one" {
		t.Fatalf("got %q", b)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the temporary file is left: %v", err)
	}
	boom := errors.New("boom")
	err := Replace(tmp, path, func(w io.Writer) error { io.WriteString(w, "tw"); return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("want the write's error, got %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "one" {
		t.Fatalf("a failed write replaced the file: %q", b)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed write left its temporary file: %v", err)
	}
}

func TestWriteFileAndDir(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rec.json")
	for _, s := range []string{"first", "second"} {
		if err := WriteFile(path, strings.NewReader(s)); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(path); string(b) != s {
			t.Fatalf("got %q, want %q", b, s)
		}
	}
	if err := Dir(dir); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("want only the file, got %v", ents)
	}
	if err := Dir(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("syncing a missing directory must fail")
	}
}
