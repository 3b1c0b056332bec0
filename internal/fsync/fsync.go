// Package fsync makes file changes survive a crash: a name created,
// renamed or removed in a directory is durable only once the directory
// itself is synced, and a file written in place can be seen half-written.
// Every store of mailflow's (the ledger, the quarantine, a Maildir) goes
// through these two steps, so they are written once.
package fsync

import (
	"io"
	"os"
	"path/filepath"
)

// Dir syncs the directory dir, making the names created, renamed or
// removed in it durable.
func Dir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Replace writes a file at tmp with write, syncs and closes it, and renames
// it to path, so that a reader of path sees the whole file or none. On
// failure tmp is removed. It does not sync path's directory: a caller that
// writes several files syncs it once, after the last (Dir).
func Replace(tmp, path string, write func(io.Writer) error) error {
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	return finish(f, path, write)
}

// WriteFile is Replace through a temporary file of a fresh name beside
// path, for a store where two writers may write at once.
func WriteFile(path string, r io.Reader) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	return finish(f, path, func(w io.Writer) error {
		_, err := io.Copy(w, r)
		return err
	})
}

// finish writes, syncs, closes and renames f; on failure it removes f.
func finish(f *os.File, path string, write func(io.Writer) error) error {
	err := write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
