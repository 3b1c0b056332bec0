package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockStateDir makes this process the only mailflow using dir: two
// processes on one ledger would each think they own its records. The lock
// is an flock on state_dir/mailflow.lock, which the kernel releases when the
// process dies however it dies; the file holds the pid for the error message.
func lockStateDir(dir string) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "mailflow.lock")
	release, err = lockFile(path)
	if err != nil {
		holder := "another process"
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
				holder = fmt.Sprintf("mailflow pid %d", pid)
			}
		}
		return nil, fmt.Errorf("state_dir %s is in use by %s; stop it first, or give this config its own state_dir", dir, holder)
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		release()
		return nil, err
	}
	return release, nil
}

// errLocked is returned by lockFile when another holds the lock.
var errLocked = errors.New("locked by another process")

// lockFile takes an exclusive flock on path without waiting.
func lockFile(path string) (release func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errLocked
		}
		return nil, err
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
