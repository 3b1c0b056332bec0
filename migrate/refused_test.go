package migrate_test

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/migrate"
)

// refusing is go-imap's in-memory server with users src and dst, where dst
// may not CREATE the folders of refuse ("NO [NOPERM]"), and which counts
// the FETCH BODY[] commands src is sent per folder.
type refusing struct {
	mu      sync.Mutex
	refuse  map[string]bool
	fetched map[string]int // folder → FETCH BODY[] at src
}

type refusingSession struct {
	imapserver.SessionIMAP4rev2
	srv          *refusing
	user, folder string
}

func (s *refusingSession) Login(user, pass string) error {
	s.user = user
	return s.SessionIMAP4rev2.Login(user, pass)
}

func (s *refusingSession) Create(name string, opts *goimap.CreateOptions) error {
	s.srv.mu.Lock()
	refuse := s.user == "dst" && s.srv.refuse[name]
	s.srv.mu.Unlock()
	if refuse {
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeNoPerm, Text: "Permission denied"}
	}
	return s.SessionIMAP4rev2.Create(name, opts)
}

func (s *refusingSession) Select(name string, opts *goimap.SelectOptions) (*goimap.SelectData, error) {
	s.folder = name
	return s.SessionIMAP4rev2.Select(name, opts)
}

func (s *refusingSession) Fetch(w *imapserver.FetchWriter, numSet goimap.NumSet, opts *goimap.FetchOptions) error {
	if s.user == "src" && len(opts.BodySection) > 0 && opts.BodySection[0].Specifier == goimap.PartSpecifierNone {
		s.srv.mu.Lock()
		s.srv.fetched[s.folder]++
		s.srv.mu.Unlock()
	}
	return s.SessionIMAP4rev2.Fetch(w, numSet, opts)
}

func refusingServer(t *testing.T, refuse ...string) (string, *refusing) {
	t.Helper()
	rs := &refusing{refuse: map[string]bool{}, fetched: map[string]int{}}
	for _, f := range refuse {
		rs.refuse[f] = true
	}
	mem := imapmemserver.New()
	for _, u := range []string{"src", "dst"} {
		user := imapmemserver.NewUser(u, "p")
		user.Create("INBOX", nil)
		mem.AddUser(user)
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &refusingSession{SessionIMAP4rev2: mem.NewSession().(imapserver.SessionIMAP4rev2), srv: rs}, nil, nil
		},
		Caps:         goimap.CapSet{goimap.CapIMAP4rev1: {}, goimap.CapIMAP4rev2: {}},
		InsecureAuth: true,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), rs
}

// A destination that refuses to create a folder refuses no message: the
// run names the folder and the server's answer, leaves its messages at the
// source without fetching them, moves the other folders, quarantines
// nothing, holds nothing in doubt, and fails as a plan does (a retry
// cannot help); run again with a --folder-map for it, it moves them.
func TestARefusedFolderStopsThatFolderAsAPlanError(t *testing.T) {
	addr, rs := refusingServer(t, "Private")
	src := imapLogin(t, addr, "src")
	for i := range 9 {
		folder := []string{"INBOX", "Archive", "Private"}[i%3]
		src.Create(folder, nil).Wait()
		m := enginetest.CRLF([][]byte{enginetest.Message(enginetest.Plain, i, 2<<10)})[0]
		cmd := src.Append(folder, int64(len(m)), nil)
		cmd.Write(m)
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("MF_MIGRATE_TEST_PW", "p")
	plan := migrate.Plan{
		From:               migrate.Endpoint{URL: "imap://src@" + addr + "?tls=none", PasswordEnv: "MF_MIGRATE_TEST_PW"},
		To:                 migrate.Endpoint{URL: "imap://dst@" + addr + "?tls=none", PasswordEnv: "MF_MIGRATE_TEST_PW"},
		AllowPlaintextAuth: true,
		StateDir:           filepath.Join(t.TempDir(), "state"),
	}
	for run := 1; run <= 2; run++ {
		r := migrate.Run(context.Background(), plan, migrate.Options{})
		moved := int64(6)
		if run == 2 {
			moved = 0
		}
		if r.Result() != migrate.Failed || r.Class() != migrate.ClassPlan || r.Moved != moved {
			t.Fatalf("run %d: result %v, class %q, moved %d (want failed, plan, %d): %+v", run, r.Result(), r.Class(), r.Moved, moved, r.Errors)
		}
		if len(r.RefusedFolders) != 1 || r.RefusedFolders[0].Folder != "Private" || r.RefusedFolders[0].Messages != 3 ||
			!strings.Contains(r.RefusedFolders[0].Reason, "Permission denied") {
			t.Fatalf("run %d: refused folders %+v, want Private with its 3 messages and the server's answer", run, r.RefusedFolders)
		}
		if !strings.Contains(r.Errors[0].Message, `"Private"`) || !strings.Contains(r.Errors[0].Message, "Permission denied") ||
			!strings.Contains(r.Errors[0].Message, "--folder-map 'Private=") {
			t.Fatalf("run %d: error %q names not the folder, the answer and the way out", run, r.Errors[0].Message)
		}
		if r.Deferred != 0 || r.InDoubt != 0 || len(r.Refused) != 0 {
			t.Fatalf("run %d: deferred %d, in doubt %d, quarantined %d; want none", run, r.Deferred, r.InDoubt, len(r.Refused))
		}
		if r.Verified() != "yes" {
			t.Fatalf("run %d: the folders that moved did not verify: %+v", run, r.Verifications)
		}
		var text bytes.Buffer
		r.WriteText(&text, "STATE")
		if !strings.Contains(text.String(), "Private: 3 messages") || strings.Contains(text.String(), "in doubt") {
			t.Fatalf("run %d: report\n%s", run, text.String())
		}
	}
	rs.mu.Lock()
	fetched := rs.fetched["Private"]
	rs.mu.Unlock()
	if fetched != 0 || count(t, addr, "src", "Private") != 3 || count(t, addr, "dst", "Archive") != 3 || count(t, addr, "dst", "INBOX") != 3 {
		t.Fatalf("Private fetched %d times (want 0); src Private %d, dst Archive %d, INBOX %d", fetched,
			count(t, addr, "src", "Private"), count(t, addr, "dst", "Archive"), count(t, addr, "dst", "INBOX"))
	}
	plan.FolderMap = map[string]string{"Private": "Kept/Private"}
	r := migrate.Run(context.Background(), plan, migrate.Options{})
	if r.Result() != migrate.Done || r.Moved != 3 || r.Verified() != "yes" || count(t, addr, "dst", "Kept/Private") != 3 {
		t.Fatalf("with --folder-map: result %v, moved %d, verified %s: %+v", r.Result(), r.Moved, r.Verified(), r.Errors)
	}
}
