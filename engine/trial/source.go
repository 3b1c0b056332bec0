package trial

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mailflow/mailflow/internal/human"
)

// Message is one saved message to try.
type Message struct {
	// Name is what the output calls it: a file's path; for a message of
	// an mbox, the mbox's path (or "stdin"), its number in it and its
	// From_ line.
	Name string
	// ID is the source id a script sees (msg.id): the file's name, with
	// "#N" for a message of an mbox.
	ID string
	// R reads its bytes, until the next message is asked for.
	R io.Reader
	// Err says why it could not be read (then R is nil).
	Err error
}

// Mbox splits an mbox into its messages for Messages. The engine knows no
// mbox format and imports no connector: the caller gives one (cmd/mailflow
// gives connectors/mbox's Reader).
type Mbox struct {
	// Is reports whether head, the first bytes of a stream (up to 1 KiB),
	// start an mbox.
	Is func(head []byte) bool
	// Read returns a function that gives the messages of the mbox r in
	// turn, each as its From_ line and a reader of its bytes (valid until
	// the next call), and io.EOF after the last.
	Read func(r io.Reader) func() (from string, msg io.Reader, err error)
}

// Check checks the arguments of Messages before anything runs: each is
// "-" (standard input, at most once) or a file or directory that exists.
func Check(args []string) error {
	stdin := 0
	for _, a := range args {
		if a == "-" {
			if stdin++; stdin > 1 {
				return errors.New(`"-" (standard input) can be given once`)
			}
			continue
		}
		if _, err := os.Stat(a); err != nil {
			return err
		}
	}
	return nil
}

// Messages yields the messages that args name, in turn:
//
//   - a file is one message, or each message of an mbox, told by its
//     first line ("From " and a date, as mbox.Is says);
//   - a Maildir (a directory with two of cur/, new/ and tmp/) is the
//     files of its cur/ and new/: its tmp/ (messages still being
//     delivered) and the files beside them (dovecot-uidlist, …) are
//     passed over, and its subdirectories (Maildir++ folders) read
//     likewise;
//   - any other directory is every file under it, but for dot files,
//     each read as a file is;
//   - "-" is standard input, one message or an mbox.
//
// Files come in the order of their paths. A message that cannot be read
// comes with its Err, and the next one follows.
func Messages(args []string, stdin io.Reader, mbox Mbox) iter.Seq[Message] {
	return func(yield func(Message) bool) {
		for _, a := range args {
			if a == "-" {
				br := bufio.NewReaderSize(stdin, 64<<10)
				head, _ := br.Peek(1 << 10)
				if !stream("stdin", "stdin", br, head, mbox, yield) {
					return
				}
				continue
			}
			files, err := list(a)
			if err != nil {
				if !yield(Message{Name: a, Err: err}) {
					return
				}
				continue
			}
			for _, f := range files {
				if !file(f, mbox, yield) {
					return
				}
			}
		}
	}
}

// file yields the message, or the messages, of the file at path.
func file(path string, mbox Mbox, yield func(Message) bool) bool {
	f, err := os.Open(path)
	if err != nil {
		return yield(Message{Name: path, Err: err})
	}
	defer f.Close()
	head := make([]byte, 1<<10)
	n, err := f.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return yield(Message{Name: path, Err: err})
	}
	return stream(path, filepath.Base(path), f, head[:n], mbox, yield)
}

// stream yields r as one message, or, if head starts an mbox, each of its
// messages.
func stream(name, id string, r io.Reader, head []byte, mbox Mbox, yield func(Message) bool) bool {
	if mbox.Is == nil || !mbox.Is(head) {
		return yield(Message{Name: name, ID: id, R: r})
	}
	next := mbox.Read(r)
	for n := 1; ; n++ {
		from, msg, err := next()
		switch {
		case err == io.EOF:
			return true
		case err != nil:
			return yield(Message{Name: fmt.Sprintf("%s #%d", name, n), Err: err})
		}
		m := Message{Name: fmt.Sprintf("%s #%d (%s)", name, n, human.Clip(from, 100)), ID: fmt.Sprintf("%s#%d", id, n), R: msg}
		if !yield(m) {
			return false
		}
	}
}

// list gives the files to read for the argument path, sorted.
func list(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	var out []string
	if err := walk(path, &out); err != nil {
		return nil, err
	}
	slices.Sort(out)
	return out, nil
}

// walk adds the message files under dir to out (see Messages).
func walk(dir string, out *[]string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	maildir := isMaildir(entries)
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		switch {
		case e.IsDir() && maildir && (e.Name() == "cur" || e.Name() == "new"):
			files, err := os.ReadDir(p)
			if err != nil {
				return err
			}
			for _, f := range files {
				if f.Type().IsRegular() && !strings.HasPrefix(f.Name(), ".") {
					*out = append(*out, filepath.Join(p, f.Name()))
				}
			}
		case e.IsDir() && maildir && e.Name() == "tmp":
		case e.IsDir():
			if err := walk(p, out); err != nil {
				return err
			}
		case !maildir && e.Type().IsRegular() && !strings.HasPrefix(e.Name(), "."):
			*out = append(*out, p)
		}
	}
	return nil
}

// isMaildir reports whether a directory with these entries is a Maildir:
// it has two of cur/, new/ and tmp/ (a copy may lack an empty one: git
// keeps no empty directory).
func isMaildir(entries []os.DirEntry) bool {
	has := 0
	for _, e := range entries {
		if e.IsDir() && (e.Name() == "cur" || e.Name() == "new" || e.Name() == "tmp") {
			has++
		}
	}
	return has >= 2
}
