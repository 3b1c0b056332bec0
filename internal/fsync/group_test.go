package fsync

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Many writers at once each return from Sync after their file's name is
// in the directory, and share syncs rather than each making one.
func TestGroupSharesSyncs(t *testing.T) {
	dir := t.TempDir()
	g := &Group{Dir: dir}
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := filepath.Join(dir, string(rune('a'+i%26))+string(rune('0'+i/26)))
			if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
				t.Error(err)
			}
			if err := g.Sync(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if g.done == 0 || g.done > 64 {
		t.Fatalf("%d syncs for 64 writers", g.done)
	}
	t.Logf("%d syncs for 64 writers", g.done)
	bad := &Group{Dir: filepath.Join(dir, "missing")}
	if bad.Sync() == nil {
		t.Fatal("a directory that is not there synced")
	}
}
