package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/mailflow/mailflow/internal/flock"
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
	release, err = flock.Lock(path)
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
