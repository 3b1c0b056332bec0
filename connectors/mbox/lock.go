package mbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// LockError says a lock on an mbox could not be had in time: another
// program is reading or writing it. It is temporary.
type LockError struct {
	Path   string
	Kind   string // "fcntl" or "dotlock"
	Waited time.Duration
}

func (e *LockError) Error() string {
	return fmt.Sprintf("%s is locked (%s) by another program; waited %s", e.Path, e.Kind, e.Waited.Round(time.Millisecond))
}

// errNoLocks is returned by fcntlLock when the file system has no
// record locks (an NFS mount without lockd): the caller decides whether
// to go on without.
var errNoLocks = errors.New("the file system does not support fcntl locks")

// fcntlLock takes a POSIX record lock (F_RDLCK or F_WRLCK) on the whole
// of f: what mutt, procmail, Postfix and Dovecot take on a mail spool,
// and, unlike flock, what NFS carries to the server. It asks with F_SETLK
// and asks again while the lock is held elsewhere, until timeout or ctx
// ends: F_SETLKW waits in the kernel, where no deadline reaches it, and
// one stuck mail reader would hold every delivery for ever.
//
// A POSIX lock belongs to the process, not to f: closing any descriptor
// of the same file in this process lets it go. Callers hold f open, and
// no other descriptor of the file, while they hold the lock.
func fcntlLock(ctx context.Context, f *os.File, typ int16, timeout time.Duration) (unlock func(), err error) {
	lk := syscall.Flock_t{Type: typ, Whence: io.SeekStart}
	start := time.Now()
	wait := time.Millisecond
	for {
		err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk)
		if err == nil {
			return func() {
				un := syscall.Flock_t{Type: syscall.F_UNLCK, Whence: io.SeekStart}
				syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &un)
			}, nil
		}
		switch {
		case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EINTR):
		case errors.Is(err, syscall.ENOLCK), errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.EINVAL):
			return func() {}, fmt.Errorf("%s: %w (%v)", f.Name(), errNoLocks, err)
		default:
			return nil, fmt.Errorf("locking %s: %w", f.Name(), err)
		}
		if err := sleep(ctx, start, timeout, &wait); err != nil {
			if errors.Is(err, errTimeout) {
				return nil, &LockError{Path: f.Name(), Kind: "fcntl", Waited: time.Since(start)}
			}
			return nil, err
		}
	}
}

var errTimeout = errors.New("timed out")

// sleep waits *wait (doubling it up to 250ms) unless that would pass
// start+timeout (errTimeout) or ctx ends first (its error).
func sleep(ctx context.Context, start time.Time, timeout time.Duration, wait *time.Duration) error {
	left := timeout - time.Since(start)
	if left <= 0 {
		return errTimeout
	}
	t := time.NewTimer(min(*wait, left))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	*wait = min(*wait*2, 250*time.Millisecond)
	return nil
}

// dotlock takes path + ".lock", created with O_EXCL as procmail, mutt and
// Postfix create it (O_EXCL is atomic on local file systems and on NFS
// from version 3 on). A lock file older than stale was left by a writer
// that died, and is removed, as procmail does after its locktimeout.
// release removes the lock file, if it is still the one this call made.
func dotlock(ctx context.Context, path string, timeout, stale time.Duration) (release func(), err error) {
	name := path + ".lock"
	start := time.Now()
	wait := time.Millisecond
	for {
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			fmt.Fprintf(f, "%d\n", os.Getpid())
			st, serr := f.Stat()
			f.Close()
			return func() {
				// Another writer may have found it stale and made its own.
				if now, err := os.Stat(name); err == nil && serr == nil && os.SameFile(st, now) {
					os.Remove(name)
				}
			}, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("dot-file lock %s: %w (set dotlock = false where the directory cannot be written)", name, err)
		}
		if st, err := os.Stat(name); err == nil && time.Since(st.ModTime()) > stale {
			// Two writers may both find it stale, and the second remove
			// the lock the first just made: the one judged stale is
			// removed only if it is still there (a narrow window), and the
			// fcntl lock taken next keeps the two apart all the same.
			if now, err := os.Stat(name); err == nil && os.SameFile(st, now) && now.ModTime().Equal(st.ModTime()) && os.Remove(name) == nil {
				continue
			}
		}
		if err := sleep(ctx, start, timeout, &wait); err != nil {
			if errors.Is(err, errTimeout) {
				return nil, &LockError{Path: path, Kind: "dotlock", Waited: time.Since(start)}
			}
			return nil, err
		}
	}
}
