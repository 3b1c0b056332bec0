package config

import (
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/mailflow/mailflow/engine/plugin"
)

// Watcher calls reload when the config file or one of its scripts changes.
//
// It watches the directories, not the files: editors save by writing a new
// file and renaming it over the old one, which ends a watch on the file
// itself. Events are debounced, and a reload is only asked for when the
// bytes of the watched files actually changed, so touching a file or an
// editor's swap files do nothing.
type Watcher struct {
	fs      *fsnotify.Watcher
	current func() *Config // the config in force, whose files are watched
	log     *slog.Logger
	reload  func()

	mu     sync.Mutex
	files  map[string]bool
	digest [32]byte
	done   chan struct{}
}

// debounce is how long the watcher waits for a burst of events to end.
const debounce = 150 * time.Millisecond

// Watch starts watching the files of the config that current returns (it
// changes with each reload): the file, its scripts, and the files its
// plugins read.
func Watch(ctx context.Context, current func() *Config, log *slog.Logger, reload func()) (*Watcher, error) {
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	w := &Watcher{fs: fsw, current: current, log: log, reload: reload, done: make(chan struct{})}
	w.rewatch()
	go w.loop(ctx)
	return w, nil
}

// Close stops the watcher.
func (w *Watcher) Close() error {
	err := w.fs.Close()
	<-w.done
	return err
}

// watched returns the files the current config depends on: the config,
// its scripts, and the files its plugins read (secrets, CA certificates).
func (w *Watcher) watched() []string {
	cfg := w.current()
	files := []string{absPath(cfg.Path)}
	for _, p := range cfg.Pipelines {
		for _, s := range p.Scripts {
			files = append(files, absPath(s))
		}
	}
	if cfg.Script.LibDir != "" {
		// The modules scripts may require: a change to one reloads them.
		mods, _ := filepath.Glob(filepath.Join(cfg.Script.LibDir, "*.lua"))
		for _, m := range mods {
			files = append(files, absPath(m))
		}
	}
	var plugins []any
	for _, ic := range cfg.Inputs {
		plugins = append(plugins, ic.Plugin)
	}
	for _, oc := range cfg.Outputs {
		plugins = append(plugins, oc.Plugin)
	}
	for _, p := range plugins {
		if fu, ok := p.(plugin.FileUser); ok {
			for _, f := range fu.Files() {
				files = append(files, absPath(f))
			}
		}
	}
	return files
}

func absPath(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

// rewatch makes the set of watched directories match the current config.
// It takes the digest of the files' contents only when the set of files
// changed; otherwise the digest stays the one taken before the reload, so a
// save made while the reload ran is seen as a change and loaded.
func (w *Watcher) rewatch() {
	w.mu.Lock()
	defer w.mu.Unlock()
	files := w.watched()
	same := len(files) == len(w.files)
	for _, f := range files {
		same = same && w.files[f]
	}
	w.files = map[string]bool{}
	dirs := map[string]bool{}
	for _, f := range files {
		w.files[f] = true
		dirs[filepath.Dir(f)] = true
	}
	for _, d := range w.fs.WatchList() {
		if !dirs[d] {
			_ = w.fs.Remove(d)
		}
	}
	for d := range dirs {
		if err := w.fs.Add(d); err != nil {
			w.log.Warn("cannot watch directory", "dir", d, "err", err)
		}
	}
	if !same {
		w.digest = DigestFiles(files)
	}
}

// DigestFiles is a digest of the names and bytes of files (a missing file
// counts as empty): what changed since it was last taken.
func DigestFiles(files []string) [32]byte {
	h := sha256.New()
	for _, f := range files {
		io.WriteString(h, f+"\x00")
		if fh, err := os.Open(f); err == nil {
			io.Copy(h, fh)
			fh.Close()
		}
		io.WriteString(h, "\x00")
	}
	var d [32]byte
	copy(d[:], h.Sum(nil))
	return d
}

func (w *Watcher) loop(ctx context.Context) {
	defer close(w.done)
	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.fs.Events:
			if !ok {
				return
			}
			w.mu.Lock()
			relevant := w.files[absPath(ev.Name)]
			w.mu.Unlock()
			if !relevant {
				continue
			}
			if timer == nil {
				timer = time.NewTimer(debounce)
			} else {
				timer.Reset(debounce)
			}
			fire = timer.C
		case err, ok := <-w.fs.Errors:
			if !ok {
				return
			}
			w.log.Warn("file watcher", "err", err)
		case <-fire:
			fire = nil
			// The digest is taken before reloading: what is saved from now
			// on differs from it and brings another reload.
			w.mu.Lock()
			now := DigestFiles(w.watched())
			changed := now != w.digest
			w.digest = now
			w.mu.Unlock()
			if changed {
				w.reload()
				w.rewatch()
			}
		}
	}
}
