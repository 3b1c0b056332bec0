// Package fscheck tells, without changing anything a person would see,
// whether mailflow could make and write a directory or read a file:
// "mailflow check" reports what "run" would fail on.
package fscheck

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Writable reports why dir could not be used as a directory mailflow
// writes into, or nil: an existing directory must take a new file; a
// missing one must be creatable under the nearest directory that exists
// (tried by making and removing a directory there: permission bits say
// nothing of read-only mounts, /proc, or root squash).
func Writable(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	case err == nil:
		f, err := os.CreateTemp(dir, ".mailflow-check-*")
		if err != nil {
			return fmt.Errorf("%s cannot be written: %v", dir, unwrapPath(err))
		}
		f.Close()
		os.Remove(f.Name())
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: %v", dir, unwrapPath(err))
	}
	parent := filepath.Dir(dir)
	for parent != filepath.Dir(parent) {
		if _, err := os.Stat(parent); err == nil {
			break
		}
		parent = filepath.Dir(parent)
	}
	probe, err := os.MkdirTemp(parent, ".mailflow-check-")
	if err != nil {
		return fmt.Errorf("%s does not exist and cannot be made: %s: %v", dir, parent, unwrapPath(err))
	}
	os.Remove(probe)
	return nil
}

// ReadableDir reports why dir is not a directory mailflow can list, or nil.
func ReadableDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s does not exist", dir)
		}
		return fmt.Errorf("%s: %v", dir, unwrapPath(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if _, err := f.ReadDir(1); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s cannot be read: %v", dir, unwrapPath(err))
	}
	return nil
}

// ReadableFile reports why path is not a file mailflow can read, or nil.
func ReadableFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s does not exist", path)
		}
		return fmt.Errorf("%s: %v", path, unwrapPath(err))
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a directory, not a file", path)
	}
	return nil
}

// unwrapPath is the reason of a *fs.PathError without the path, which the
// caller names already.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
