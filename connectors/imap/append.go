package imap

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	goimap "github.com/emersion/go-imap/v2"
)

// APPENDs are pipelined: where the server has LITERAL+ (RFC 7888) a
// message follows its command at once, without waiting for the server's
// "+" (go-imap sends it so since our patch, third_party/README.md), and
// several goroutines each send one on the same session and wait for their
// own tagged reply. go-imap's encoder lock lets one command out at a time,
// whole; its reader hands each reply to the command with its tag. What
// becomes of a message is then known message by message, as with one
// APPEND at a time: a NO is about that message only, and when the session
// is lost only the messages whose reply had not come are in doubt.

// notSentError is an APPEND whose message did not reach the server whole
// (the session was closed before it went out, or broke while it did): the
// server cannot have stored it, so it is not in doubt, and it may go again
// at once on another session.
type notSentError struct{ err error }

func (e *notSentError) Error() string { return "the message was not sent: " + e.err.Error() }
func (e *notSentError) Unwrap() error { return e.err }

// errClosed is what an APPEND on a session already closed fails with.
var errClosed = errors.New("the session was closed")

// copyBufs lend the buffer a message is written to the server from when
// its reader cannot write itself (a message held in chunks, or spilled to
// a file): 256 KiB a write instead of io.Copy's 32 KiB is an eighth of the
// system calls.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// appendMsg stores a message of size bytes, read from r, in folder with its
// flags and date, and returns what UIDPLUS says of where it went. Its error
// is a *notSentError when the message did not reach the server, a
// *goimap.Error when the server refused it (NO, BAD: not stored), and
// anything else when the reply was lost (it may have been stored).
// Several goroutines may call it at once on one session.
func (c *conn) appendMsg(folder string, flags []string, date time.Time, size int64, r io.Reader) (*goimap.AppendData, error) {
	if !c.open() {
		return nil, &notSentError{errClosed}
	}
	defer c.wd.begin()()
	fl := make([]goimap.Flag, 0, len(flags))
	for _, f := range flags {
		if f != `\Recent` {
			fl = append(fl, goimap.Flag(f))
		}
	}
	cmd := c.c.Append(folder, size, &goimap.AppendOptions{Flags: fl, Time: date})
	n, err := writeLiteral(cmd, r)
	if err == nil && n != size {
		err = fmt.Errorf("the message has %d bytes, not the %d announced", n, size)
	}
	if err != nil {
		// The server waits for the rest of the literal, and would take the
		// next command for it: the session ends before the encoder lock
		// goes to another APPEND.
		c.c.Close()
		cmd.Close()
		return nil, &notSentError{err}
	}
	if err := cmd.Close(); err != nil {
		// The end of the message may have gone out before the write failed.
		return nil, fmt.Errorf("imap APPEND: %w", err)
	}
	return cmd.Wait()
}

// writeLiteral writes r to w in as few writes as it can: a message held in
// one piece in a single write, others through a large buffer.
func writeLiteral(w io.Writer, r io.Reader) (int64, error) {
	if wt, ok := r.(io.WriterTo); ok {
		return wt.WriteTo(w)
	}
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	return io.CopyBuffer(onlyWriter{w}, r, *buf)
}

// onlyWriter hides everything but Write, so that io.CopyBuffer uses the
// buffer it is given.
type onlyWriter struct{ io.Writer }
