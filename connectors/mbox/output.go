package mbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/internal/fscheck"
)

// Output appends messages to an mbox file. Its exported fields are its
// config.
//
// Each delivery takes the locks a mail spool's readers and writers take:
// the dot-file lock (path.lock), then an fcntl write lock on the file; it
// opens the file afresh each time (a mail reader may have replaced it by
// renaming a rewritten copy onto it, under the same locks), appends the
// From_ line and the quoted message, and syncs the file before saying the
// message was accepted. A failure part-way (a full disk, a failed sync)
// truncates the file back to where it ended, so that no reader ever sees
// half a message and a retry does not leave one behind.
//
// Deliveries from several goroutines are written one after the other: a
// POSIX lock is the process's, so it keeps other programs out, and a mutex
// keeps this process's own deliveries apart.
//
// After mailflow was stopped hard in the middle of a delivery (the engine
// says so with Delivery.InDoubt), the output looks for the message at the
// end of the file before appending it again: the copy the stopped
// delivery wrote and synced is found there, and not written twice.
type Output struct {
	Path string `toml:"path"`
	// Variant is "mboxrd" (default) or "mboxo".
	Variant     string `toml:"variant"`
	Create      *bool  `toml:"create"`
	Dotlock     *bool  `toml:"dotlock"`
	LockTimeout string `toml:"lock_timeout"`
	StaleLock   string `toml:"stale_lock"`

	log         *slog.Logger
	file        string
	variant     Variant
	dotlock     bool
	lockTimeout time.Duration
	staleLock   time.Duration

	mu sync.Mutex // one delivery at a time
	w  *Writer
	// now is the clock of From_ lines for messages that bring no date.
	now func() time.Time
	// wrap, in tests, stands between the Writer and the file.
	wrap func(io.Writer) io.Writer
}

// SampleConfig returns the documented sample config of both plugins.
func (*Output) SampleConfig() string { return sampleConfig }

// Provision implements plugin.Provisioner.
func (o *Output) Provision(env plugin.Env) error {
	o.log, o.file = env.Logger, resolve(env.BaseDir, o.Path)
	return nil
}

// Init implements plugin.Initializer.
func (o *Output) Init() error {
	if o.Path == "" {
		return errors.New("path is required")
	}
	if o.file == "" {
		o.file = o.Path
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	var err error
	if o.variant, err = ParseVariant(o.Variant); err != nil {
		return err
	}
	if o.variant == Auto {
		o.variant = Mboxrd
	}
	if o.w, err = NewWriter(io.Discard, o.variant); err != nil {
		return fmt.Errorf("variant: %w", err)
	}
	o.dotlock = o.Dotlock == nil || *o.Dotlock
	for _, d := range []struct {
		key string
		s   string
		def time.Duration
		to  *time.Duration
	}{{"lock_timeout", o.LockTimeout, 30 * time.Second, &o.lockTimeout}, {"stale_lock", o.StaleLock, 5 * time.Minute, &o.staleLock}} {
		*d.to = d.def
		if d.s != "" {
			if *d.to, err = time.ParseDuration(d.s); err != nil || *d.to <= 0 {
				return fmt.Errorf("%s: %q is no duration such as \"30s\"", d.key, d.s)
			}
		}
	}
	if o.now == nil {
		o.now = time.Now
	}
	return nil
}

// Start implements plugin.Starter: it creates the file (and its
// directory) unless create is false, so that a wrong path fails at
// start-up ("mailflow check" creates nothing).
func (o *Output) Start(ctx context.Context) error {
	if o.Create == nil || *o.Create {
		if err := os.MkdirAll(filepath.Dir(o.file), 0o700); err != nil {
			return err
		}
		f, err := os.OpenFile(o.file, os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		f.Close()
	}
	st, err := os.Stat(o.file)
	if err != nil {
		return fmt.Errorf("mbox output: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("mbox output: %s is not a file", o.file)
	}
	return nil
}

// Check implements plugin.Checker: what Start would find, without
// making anything. The file is appended to, so its directory must take
// the dot-lock file too.
func (o *Output) Check() error {
	if _, err := os.Stat(o.file); err != nil && o.Create != nil && !*o.Create {
		return fmt.Errorf("path: %s does not exist and create = false", o.file)
	}
	if err := fscheck.Writable(filepath.Dir(o.file)); err != nil {
		return fmt.Errorf("path: %v", err)
	}
	return nil
}

// Deliver implements plugin.Output.
func (o *Output) Deliver(ctx context.Context, msg *message.Message, d plugin.Delivery) ([]plugin.RecipientResult, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.dotlock {
		release, err := dotlock(ctx, o.file, o.lockTimeout, o.staleLock)
		if err != nil {
			return nil, err
		}
		defer release()
	}
	f, unlock, err := o.open(ctx)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	defer unlock()
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, err
	}
	if d.InDoubt && o.holds(f, end, msg) {
		o.log.Info("mbox: the message was written before mailflow was stopped; not writing it again", "path", o.file, "message_id", msg.MessageID())
		return nil, nil
	}
	if err := o.append(f, end, msg); err != nil {
		// Back to where the file ended: no reader sees half a message.
		if terr := f.Truncate(end); terr != nil {
			err = errors.Join(err, fmt.Errorf("could not truncate %s back to %d bytes: %w", o.file, end, terr))
		} else {
			f.Sync()
		}
		return nil, fmt.Errorf("mbox output %s: %w", o.file, err)
	}
	return nil, nil
}

// open opens the file for appending and takes the fcntl write lock. A
// writer that rewrites the file and renames the copy onto it does so
// under the locks: if the name no longer leads to the file opened once
// the lock is had, it is opened again. A file a mail reader removed when
// it was emptied (mutt's save_empty = no) is made again, unless create is
// false.
func (o *Output) open(ctx context.Context) (*os.File, func(), error) {
	flags := os.O_RDWR | os.O_APPEND
	if o.Create == nil || *o.Create {
		flags |= os.O_CREATE
	}
	for try := 0; ; try++ {
		f, err := os.OpenFile(o.file, flags, 0o600)
		if err != nil {
			return nil, nil, err
		}
		unlock, err := fcntlLock(ctx, f, syscall.F_WRLCK, o.lockTimeout)
		if errors.Is(err, errNoLocks) {
			o.log.Debug("mbox: writing under the dot-file lock alone", "err", err)
		} else if err != nil {
			f.Close()
			return nil, nil, err
		}
		had, err1 := f.Stat()
		now, err2 := os.Stat(o.file)
		if err1 == nil && err2 == nil && os.SameFile(had, now) {
			return f, unlock, nil
		}
		unlock()
		f.Close()
		if try == 3 {
			return nil, nil, fmt.Errorf("%s keeps being replaced while it is being locked", o.file)
		}
	}
}

// append writes msg at end of f (opened for appending, so at its end) and
// syncs f.
func (o *Output) append(f *os.File, end int64, msg *message.Message) error {
	var dst io.Writer = f
	if o.wrap != nil {
		dst = o.wrap(f)
	}
	o.w.Reset(dst)
	// The message before must end with a blank line, as every reader of
	// mbox requires before a From_ line; another writer may not have left
	// one.
	if sep := separatorAfter(f, end); sep != "" {
		o.w.bw.WriteString(sep)
	}
	if _, err := o.w.WriteMessage(string(fromLine(msg, o.now())), msg.Reader()); err != nil {
		return err
	}
	if err := o.w.Flush(); err != nil {
		return err
	}
	return f.Sync()
}

// separatorAfter is what must be written after the last end bytes of f
// so that it ends with a blank line: nothing for an empty file or one
// that does.
func separatorAfter(f *os.File, end int64) string {
	if end == 0 {
		return ""
	}
	var b [3]byte
	k := min(end, 3)
	n, _ := f.ReadAt(b[:k], end-k)
	tail := b[:n]
	switch {
	case n == 0:
		return "" // unreadable: better no separator than a changed message
	case bytes.HasSuffix(tail, []byte("\n\n")), bytes.HasSuffix(tail, []byte("\n\r\n")):
		return ""
	case end == 1 && tail[0] == '\n', end == 2 && bytes.Equal(tail, []byte("\r\n")):
		return ""
	case bytes.HasSuffix(tail, []byte("\n")):
		return "\n"
	}
	return "\n\n"
}

// inDoubtWindow is how far back from the end of the file a message
// delivered in doubt is looked for, beyond its own size: the deliveries
// that went on while it was written (max_in_flight of them) were small
// next to it, or it is found all the same.
const inDoubtWindow = 64 << 20

// holds reports whether one of the messages at the end of f (within
// inDoubtWindow and msg's size of its end) is msg, byte for byte as a
// Reader gives it back.
func (o *Output) holds(f *os.File, end int64, msg *message.Message) bool {
	want := &tail{h: sha256.New()}
	if _, err := msg.WriteTo(want); err != nil {
		return false
	}
	n := want.n
	// A Reader gives a last line without a line end back with one.
	if n > 0 && want.last != '\n' {
		want.Write([]byte("\n"))
		n++
	}
	var sum [32]byte
	want.h.Sum(sum[:0])
	from := max(end-inDoubtWindow-n, 0)
	start := findFromLine(f, from, end)
	if start < 0 {
		return false
	}
	rd := NewReader(io.NewSectionReader(f, start, end-start), o.variant)
	h := sha256.New()
	for {
		m, err := rd.Next()
		if err != nil {
			return false
		}
		h.Reset()
		if _, err := m.WriteTo(h); err != nil {
			return false
		}
		var got [32]byte
		if m.Size() == n && bytes.Equal(h.Sum(got[:0]), sum[:]) {
			return true
		}
	}
}

// tail hashes what is written to it and keeps its last byte.
type tail struct {
	h    hash.Hash
	n    int64
	last byte
}

func (t *tail) Write(p []byte) (int, error) {
	if len(p) > 0 {
		t.last = p[len(p)-1]
	}
	t.n += int64(len(p))
	return t.h.Write(p)
}

// findFromLine is the offset of the first From_ line at or after from
// that follows a blank line (or starts the file), before end; -1 if none.
func findFromLine(f *os.File, from, end int64) int64 {
	if from == 0 {
		return 0
	}
	const chunk = 64 << 10
	buf := make([]byte, chunk+8)
	for off := from; off < end; off += chunk {
		n, _ := f.ReadAt(buf[:min(int64(len(buf)), end-off)], off)
		b := buf[:n]
		for i := 0; ; {
			j := bytes.Index(b[i:], []byte("\nFrom "))
			if j < 0 {
				break
			}
			at := i + j
			if at > 0 && b[at-1] == '\n' || at > 1 && b[at-1] == '\r' && b[at-2] == '\n' {
				return off + int64(at) + 1
			}
			i = at + 1
		}
	}
	return -1
}

var (
	_ plugin.Output      = (*Output)(nil)
	_ plugin.Provisioner = (*Output)(nil)
	_ plugin.Initializer = (*Output)(nil)
	_ plugin.Starter     = (*Output)(nil)
)
