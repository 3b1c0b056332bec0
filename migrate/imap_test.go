package migrate_test

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/migrate"
)

// imapServer is go-imap's in-memory server with users src and dst
// (password "p").
func imapServer(t *testing.T) string {
	t.Helper()
	mem := imapmemserver.New()
	for _, u := range []string{"src", "dst"} {
		user := imapmemserver.NewUser(u, "p")
		user.Create("INBOX", nil)
		mem.AddUser(user)
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
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
	return ln.Addr().String()
}

func imapLogin(t *testing.T, addr, user string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, "p").Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

// count is how many messages user's folder holds.
func count(t *testing.T, addr, user, folder string) uint32 {
	t.Helper()
	c := imapLogin(t, addr, user)
	st, err := c.Status(folder, &goimap.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		return 0
	}
	return *st.NumMessages
}

// An IMAP mailbox moves folder by folder, the report carries the
// verification per folder, and --delete-source empties the source only
// after it found nothing missing.
func TestIMAPToIMAPVerifiesThenDeletesTheSource(t *testing.T) {
	addr := imapServer(t)
	src := imapLogin(t, addr, "src")
	// Mix's kinds but the message with no header, for which go-imap's
	// in-memory server answers BODY[] with nothing.
	kinds := []enginetest.Kind{enginetest.Plain, enginetest.Multipart, enginetest.UTF8Header, enginetest.RawUTF8, enginetest.BareLF, enginetest.DotLines, enginetest.EightBitBody}
	var msgs [][]byte
	for i := range 9 {
		msgs = append(msgs, enginetest.Message(kinds[i%len(kinds)], i, 4<<10))
	}
	msgs = enginetest.CRLF(msgs)
	for i, m := range msgs {
		folder := []string{"INBOX", "Archive", "Lists/go"}[i%3]
		src.Create(folder, nil).Wait()
		cmd := src.Append(folder, int64(len(m)), &goimap.AppendOptions{Flags: []goimap.Flag{goimap.FlagSeen}, Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)})
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
	r := migrate.Run(context.Background(), plan, migrate.Options{})
	if r.Result() != migrate.Done || r.Moved != 9 {
		t.Fatalf("moved %d, errors %+v", r.Moved, r.Errors)
	}
	if r.Verified() != "yes" || len(r.Verifications) != 1 || len(r.Verifications[0].Folders) != 3 {
		t.Fatalf("verifications %+v", r.Verifications)
	}
	for _, f := range r.Verifications[0].Folders {
		if f.Source != 3 || f.Found != 3 {
			t.Fatalf("folder %+v", f)
		}
	}
	// The same plan with a fresh state (another machine, or the record
	// lost) copies nothing, and says so: moved 0, all 9 already there.
	fresh := plan
	fresh.StateDir = filepath.Join(t.TempDir(), "fresh")
	again := migrate.Run(context.Background(), fresh, migrate.Options{})
	if again.Moved != 0 || again.AlreadyThere != 9 || again.Result() != migrate.Done {
		t.Fatalf("a run with a fresh state: moved %d, already there %d (%+v); want 0 and 9", again.Moved, again.AlreadyThere, again.Errors)
	}
	// --delete-source, with the first run's record, empties the source.
	plan.DeleteSource = true
	r = migrate.Run(context.Background(), plan, migrate.Options{})
	if r.Result() != migrate.Done || r.SourceDeleted != 9 || r.AlreadyMoved != 9 {
		t.Fatalf("deleted %d at the source (want 9), already moved %d: %+v", r.SourceDeleted, r.AlreadyMoved, r.Errors)
	}
	for _, f := range []string{"INBOX", "Archive", "Lists/go"} {
		if n, m := count(t, addr, "src", f), count(t, addr, "dst", f); n != 0 || m != 3 {
			t.Fatalf("%s: %d left at the source, %d at the destination", f, n, m)
		}
	}
	// A dry run of the emptied source lists nothing to move.
	list, totals, err := migrate.DryRun(context.Background(), plan, nil)
	if err != nil || len(list) != 0 || totals.ToMove.Messages != 0 {
		t.Fatalf("dry run: %v %+v %v", list, totals, err)
	}
}

// A run again with only its --state repeats the saved plan: the folder
// map given the first time holds, and the verification looks where the
// messages went, not under the unmapped names.
func TestRunAgainWithOnlyTheStateFollowsTheSavedPlan(t *testing.T) {
	addr := imapServer(t)
	src := imapLogin(t, addr, "src")
	src.Create("Archive", nil).Wait()
	for i := range 4 {
		m := enginetest.CRLF([][]byte{enginetest.Message(enginetest.Plain, i, 2<<10)})[0]
		cmd := src.Append("Archive", int64(len(m)), nil)
		cmd.Write(m)
		cmd.Close()
		cmd.Wait()
	}
	t.Setenv("MF_MIGRATE_TEST_PW", "p")
	state := filepath.Join(t.TempDir(), "state")
	plan := migrate.Plan{
		From:               migrate.Endpoint{URL: "imap://src@" + addr + "?tls=none", PasswordEnv: "MF_MIGRATE_TEST_PW"},
		To:                 migrate.Endpoint{URL: "imap://dst@" + addr + "?tls=none", PasswordEnv: "MF_MIGRATE_TEST_PW"},
		AllowPlaintextAuth: true,
		FolderMap:          map[string]string{"Archive": "Old"},
		StateDir:           state,
	}
	if r := migrate.Run(context.Background(), plan, migrate.Options{}); r.Moved != 4 || r.Verified() != "yes" {
		t.Fatalf("first run: moved %d, verified %s, %+v", r.Moved, r.Verified(), r.Errors)
	}
	again := migrate.Plan{StateDir: state}
	if ok, err := again.Resume(); !ok || err != nil {
		t.Fatalf("resume: %v %v", ok, err)
	}
	r := migrate.Run(context.Background(), again, migrate.Options{})
	if r.Result() != migrate.Done || r.Moved != 0 || r.Verified() != "yes" || count(t, addr, "dst", "Old") != 4 {
		t.Fatalf("again: moved %d, verified %s, %+v", r.Moved, r.Verified(), r.Errors)
	}
	// Another migration into the same state is refused.
	other := plan
	other.From.URL = "imap://someone@" + addr + "?tls=none"
	if _, err := other.Resume(); err == nil {
		t.Fatal("a state holding another migration's record was taken")
	}
}

// --sync-deletes: messages deleted at the source after they were moved
// are deleted at the destination on the next pass, and only with the
// flag; a pass with other --folders than the last one's is refused, since
// the folders left out would look deleted.
func TestSyncDeletesCarriesDeletionsAtTheSource(t *testing.T) {
	addr := imapServer(t)
	src := imapLogin(t, addr, "src")
	src.Create("Archive", nil).Wait()
	for i := range 6 {
		m := enginetest.CRLF([][]byte{enginetest.Message(enginetest.Plain, i, 2<<10)})[0]
		cmd := src.Append("Archive", int64(len(m)), nil)
		cmd.Write(m)
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("MF_MIGRATE_TEST_PW", "p")
	state := filepath.Join(t.TempDir(), "state")
	plan := migrate.Plan{
		From:               migrate.Endpoint{URL: "imap://src@" + addr + "?tls=none", PasswordEnv: "MF_MIGRATE_TEST_PW"},
		To:                 migrate.Endpoint{URL: "imap://dst@" + addr + "?tls=none", PasswordEnv: "MF_MIGRATE_TEST_PW"},
		AllowPlaintextAuth: true,
		StateDir:           state,
	}
	if r := migrate.Run(context.Background(), plan, migrate.Options{}); r.Moved != 6 || r.Result() != migrate.Done {
		t.Fatalf("first pass: moved %d, %+v", r.Moved, r.Errors)
	}
	if _, err := src.Select("Archive", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	deleteAtSource := func(uid uint32) {
		t.Helper()
		uids := goimap.UIDSetNum(goimap.UID(uid))
		if err := src.Store(uids, &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Flags: []goimap.Flag{goimap.FlagDeleted}}, nil).Close(); err != nil {
			t.Fatal(err)
		}
		if err := src.Expunge().Close(); err != nil {
			t.Fatal(err)
		}
	}
	pass := func(sync bool, folders []string) (*migrate.Report, error) {
		p := migrate.Plan{StateDir: state, SyncDeletes: sync, Folders: folders}
		if _, err := p.Resume(); err != nil {
			return nil, err
		}
		return migrate.Run(context.Background(), p, migrate.Options{}), nil
	}
	// Someone deletes two messages at the source.
	deleteAtSource(1)
	deleteAtSource(2)
	if _, err := pass(true, []string{"INBOX"}); err == nil || !strings.Contains(err.Error(), "--folders") {
		t.Fatalf("--sync-deletes with other --folders: %v", err)
	}
	if count(t, addr, "dst", "Archive") != 6 {
		t.Fatal("a refused pass deleted at the destination")
	}
	r, err := pass(true, nil)
	if err != nil || r.Result() != migrate.Done || r.DeletedThere != 2 || r.Verified() != "yes" {
		t.Fatalf("with --sync-deletes: deleted there %d, verified %s, %v %+v", r.DeletedThere, r.Verified(), err, r.Errors)
	}
	if n := count(t, addr, "dst", "Archive"); n != 4 {
		t.Fatalf("%d at the destination after --sync-deletes, want 4", n)
	}
	// Without the flag the destination keeps what the source lost (and
	// the verification, which looks for the source's messages, is clean).
	deleteAtSource(3)
	r, _ = pass(false, nil)
	if r.Result() != migrate.Done || r.DeletedThere != 0 || r.Verified() != "yes" {
		t.Fatalf("without --sync-deletes: deleted there %d, %+v", r.DeletedThere, r.Errors)
	}
	if n := count(t, addr, "dst", "Archive"); n != 4 {
		t.Fatalf("%d at the destination after --sync-deletes, want 4", n)
	}
}
