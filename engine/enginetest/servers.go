package enginetest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Servers are the real Dovecot and Postfix that .ci/testenv starts. Their
// addresses come from the environment file it writes.
type Servers struct {
	CA         string // PEM of the CA that signed both servers' certificate
	POP3       string // host:port, plain with STLS
	POP3S      string // host:port, implicit TLS
	IMAP       string // host:port, plain with STARTTLS
	IMAPS      string // host:port, implicit TLS
	Password   string // of every user u1..u10, over POP3 and IMAP
	SMTP       string // relay sink, no auth
	Submission string // STARTTLS + AUTH required
	SinkDir    string // the Maildir Postfix delivers every recipient to
	// OAuth is where Dovecot's oauth2 passdb checks bearer tokens (RFC
	// 7662): a test starts oauthtest.NewAt there. One test at a time.
	OAuth    string
	mailDirs string
	mailUID  int
}

// RealServers returns the servers, or ends the test: in CI (CI set) with a
// failure, since CI must run these tests; elsewhere with a skip that says
// how to start them.
func RealServers(t testing.TB) *Servers {
	t.Helper()
	s := &Servers{
		CA:         os.Getenv("MAILFLOW_TEST_CA"),
		POP3:       os.Getenv("MAILFLOW_TEST_POP3"),
		POP3S:      os.Getenv("MAILFLOW_TEST_POP3S"),
		IMAP:       os.Getenv("MAILFLOW_TEST_IMAP"),
		IMAPS:      os.Getenv("MAILFLOW_TEST_IMAPS"),
		Password:   os.Getenv("MAILFLOW_TEST_POP3_PASSWORD"),
		SMTP:       os.Getenv("MAILFLOW_TEST_SMTP"),
		Submission: os.Getenv("MAILFLOW_TEST_SUBMISSION"),
		SinkDir:    os.Getenv("MAILFLOW_TEST_SMTP_SINK"),
		OAuth:      os.Getenv("MAILFLOW_TEST_OAUTH"),
		mailDirs:   os.Getenv("MAILFLOW_TEST_POP3_MAILDIRS"),
	}
	s.mailUID, _ = strconv.Atoi(os.Getenv("MAILFLOW_TEST_POP3_UID"))
	if s.POP3 == "" || s.SMTP == "" || s.IMAP == "" {
		const how = "real Dovecot/Postfix are not running: .ci/testenv install && .ci/testenv start /tmp/mf.env && set -a && . /tmp/mf.env && set +a, then go test -tags integration ./..."
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run the integration tests, but " + how)
		}
		t.Skip(how)
	}
	return s
}

var seeded atomic.Int64

// IMAPStore returns what Dovecot user's mailbox holds on disk, by folder
// ("INBOX", "Archive/2024"): each message with CRLF line ends, and the
// Maildir flag letters of its file name. Folder names must be ASCII.
func (s *Servers) IMAPStore(t testing.TB, user string) map[string][]Stored {
	t.Helper()
	root := filepath.Join(s.mailDirs, user, "Maildir")
	out := map[string][]Stored{}
	read := func(folder, dir string) {
		for _, sub := range []string{"new", "cur"} {
			ents, _ := os.ReadDir(filepath.Join(dir, sub))
			for _, e := range ents {
				b, err := os.ReadFile(filepath.Join(dir, sub, e.Name()))
				if err != nil {
					t.Fatal(err)
				}
				_, flags, _ := strings.Cut(e.Name(), ":2,")
				out[folder] = append(out[folder], Stored{Data: CRLF([][]byte{b})[0], Flags: flags})
			}
		}
	}
	read("INBOX", root)
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), ".") && len(e.Name()) > 1 {
			read(strings.ReplaceAll(e.Name()[1:], ".", "/"), filepath.Join(root, e.Name()))
		}
	}
	return out
}

// SeedIMAP replaces the whole mailbox of Dovecot user with msgs: every
// folder ("Archive/2024" is ".Archive.2024" on disk) with each message's
// flags in its file name and its date as the file's time (Dovecot's
// INTERNALDATE for a Maildir). Folder names must be ASCII.
func (s *Servers) SeedIMAP(t testing.TB, user string, msgs map[string][]Stored) {
	t.Helper()
	root := filepath.Join(s.mailDirs, user, "Maildir")
	os.RemoveAll(root)
	for folder, list := range msgs {
		dir := root
		if folder != "INBOX" {
			dir = filepath.Join(root, "."+strings.ReplaceAll(folder, "/", "."))
		}
		for _, sub := range []string{"new", "cur", "tmp"} {
			if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		for _, m := range list {
			data := bytes.ReplaceAll(m.Data, []byte("\r\n"), []byte("\n"))
			name := fmt.Sprintf("%d.M%dP%d.seed,S=%d:2,%s", 1700000000, seeded.Add(1), os.Getpid(), len(data), m.Flags)
			path := filepath.Join(dir, "cur", name)
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			os.Chtimes(path, m.Date, m.Date)
		}
	}
	filepath.Walk(root, func(p string, _ os.FileInfo, _ error) error { return os.Chown(p, s.mailUID, s.mailUID) })
}

// Stored is a message as a Maildir holds it.
type Stored struct {
	Data  []byte
	Flags string    // Maildir info letters: "FS"
	Date  time.Time // the file's time (seeding only)
}

// AddPOP3 puts msgs into Dovecot user's INBOX beside what it holds (new
// mail arriving).
func (s *Servers) AddPOP3(t testing.TB, user string, msgs [][]byte) {
	t.Helper()
	root := filepath.Join(s.mailDirs, user, "Maildir")
	for _, m := range msgs {
		name := fmt.Sprintf("%d.M%dP%d.added", time.Now().Unix(), seeded.Add(1), os.Getpid())
		tmp := filepath.Join(root, "tmp", name)
		if err := os.WriteFile(tmp, bytes.ReplaceAll(m, []byte("\r\n"), []byte("\n")), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chown(tmp, s.mailUID, s.mailUID)
		if err := os.Rename(tmp, filepath.Join(root, "new", name)); err != nil {
			t.Fatal(err)
		}
	}
}

// SeedPOP3 replaces the mailbox of Dovecot user (u1..u10) with msgs, written
// into its Maildir the way Dovecot stores mail (LF line ends). Messages
// must use CRLF line ends, as POP3 gives them back.
func (s *Servers) SeedPOP3(t testing.TB, user string, msgs [][]byte) {
	t.Helper()
	root := filepath.Join(s.mailDirs, user, "Maildir")
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(root, sub))
		for _, e := range ents {
			os.Remove(filepath.Join(root, sub, e.Name()))
		}
	}
	for i, m := range msgs {
		name := fmt.Sprintf("%d.M%dP%d.seed", 1700000000+i, seeded.Add(1), os.Getpid())
		path := filepath.Join(root, "new", name)
		if err := os.WriteFile(path, bytes.ReplaceAll(m, []byte("\r\n"), []byte("\n")), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chown(path, s.mailUID, s.mailUID)
	}
}

// POP3Count returns how many messages Dovecot user has on disk.
func (s *Servers) POP3Count(user string) int {
	n := 0
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(s.mailDirs, user, "Maildir", sub))
		n += len(ents)
	}
	return n
}

// CRLF gives msgs with CRLF line ends and a final CRLF, as POP3 carries
// mail. It leaves its argument alone.
func CRLF(msgs [][]byte) [][]byte {
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		m = bytes.ReplaceAll(bytes.ReplaceAll(m, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
		if !bytes.HasSuffix(m, []byte("\r\n")) {
			m = append(m, "\r\n"...)
		}
		out[i] = m
	}
	return out
}

// CanonicalCRLF is what a message sent over SMTP becomes: every line end
// CRLF (a bare CR or LF made one), the last line ended.
func CanonicalCRLF(in []byte) []byte {
	var out bytes.Buffer
	for i := 0; i < len(in); i++ {
		switch {
		case in[i] == '\r' && i+1 < len(in) && in[i+1] == '\n':
			out.WriteString("\r\n")
			i++
		case in[i] == '\r' || in[i] == '\n':
			out.WriteString("\r\n")
		default:
			out.WriteByte(in[i])
		}
	}
	if out.Len() > 0 && !bytes.HasSuffix(out.Bytes(), []byte("\r\n")) {
		out.WriteString("\r\n")
	}
	return out.Bytes()
}

// WithoutTrace removes from the header block the trace fields Postfix adds
// (X-Original-To, Delivered-To, Received) or replaces (Return-Path: its
// cleanup drops any that came in, and writes its own), and the X-Loop
// trace field mailflow's SMTP output adds, with their folded lines, and
// converts to CRLF, so what we sent and what arrived compare.
func WithoutTrace(b []byte) []byte {
	b = CRLF([][]byte{b})[0]
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(b) - 2 // a header-only message: all of it is header
	}
	var out bytes.Buffer
	skipping := false
	for _, line := range bytes.SplitAfter(b[:end+2], []byte("\r\n")) {
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			if !skipping {
				out.Write(line)
			}
			continue
		}
		name, _, _ := bytes.Cut(line, []byte(":"))
		switch strings.ToLower(string(name)) {
		case "return-path", "x-original-to", "delivered-to", "received", "x-loop":
			skipping = true
		default:
			skipping = false
			out.Write(line)
		}
	}
	if end+2 <= len(b) {
		out.Write(b[end+2:])
	}
	return out.Bytes()
}

// SinkMessages waits until the sink Maildir holds want messages whose
// X-Test-Run is run, and returns them.
func SinkMessages(t *testing.T, dir, run string, want int) [][]byte {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		var out [][]byte
		for _, sub := range []string{"new", "cur"} {
			ents, _ := os.ReadDir(filepath.Join(dir, sub))
			for _, e := range ents {
				b, err := os.ReadFile(filepath.Join(dir, sub, e.Name()))
				if err == nil && bytes.Contains(b, []byte("X-Test-Run: "+run+"\n")) {
					out = append(out, b)
				}
			}
		}
		if len(out) >= want || time.Now().After(deadline) {
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Tagged gives each message an X-Test-Run header so that this run's mail
// can be told apart in the shared sink.
func Tagged(run string, msgs [][]byte) [][]byte {
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		out[i] = append([]byte("X-Test-Run: "+run+"\r\n"), CRLF([][]byte{m})[0]...)
	}
	return out
}
