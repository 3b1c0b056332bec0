package maildir_test

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mailflow/mailflow/engine/config"

	"github.com/mailflow/mailflow/engine/plugin"

	"github.com/mailflow/mailflow/connectors/internal/spoolfile"
	"github.com/mailflow/mailflow/connectors/maildir"
	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/plugins"
)

func TestInputListsFetchesAndCommits(t *testing.T) {
	for _, del := range []bool{true, false} {
		t.Run(fmt.Sprintf("delete=%v", del), func(t *testing.T) {
			dir := t.TempDir()
			msgs := enginetest.Mix(3)
			if err := enginetest.WriteMaildir(dir, msgs); err != nil {
				t.Fatal(err)
			}
			// A reader moved one to cur/ and flagged it seen.
			ents, _ := os.ReadDir(filepath.Join(dir, "new"))
			moved := ents[0].Name()
			os.Rename(filepath.Join(dir, "new", moved), filepath.Join(dir, "cur", moved+":2,S"))

			in := &maildir.Input{Path: dir, OnSettled: map[bool]string{true: "delete", false: "keep"}[del]}
			if err := in.Provision(plugin.Env{BaseDir: "/"}); err != nil {
				t.Fatal(err)
			}
			if err := in.Init(); err != nil {
				t.Fatal(err)
			}
			s, _ := in.Open(context.Background())
			l, err := s.List(context.Background())
			if err != nil || len(l.Items) != 3 || !l.Stable || l.Keeps == del || l.Scheme != "maildir" {
				t.Fatalf("listing %+v %v", l, err)
			}
			var got [][]byte
			for _, it := range l.Items {
				if it.ID == moved && !slices.Equal(it.Flags, []string{`\Seen`}) {
					t.Fatalf("flags of the moved file: %v", it.Flags)
				}
			}
			err = s.Fetch(context.Background(), l.Items, func(it plugin.Item, r io.Reader, err error) error {
				b, _ := io.ReadAll(r)
				if int64(len(b)) != it.Size {
					t.Errorf("%s: %d bytes, listed %d", it.ID, len(b), it.Size)
				}
				got = append(got, b)
				return err
			})
			if err != nil || len(got) != 3 {
				t.Fatal(err)
			}
			failed, err := s.Commit(context.Background(), l.Items[:2])
			if err != nil || len(failed) != 0 {
				t.Fatal(failed, err)
			}
			s.Close(context.Background())
			left, _ := enginetest.ReadMaildir(dir)
			if want := map[bool]int{true: 1, false: 3}[del]; len(left) != want {
				t.Fatalf("%d files left, want %d", len(left), want)
			}
		})
	}
}

func TestOutputIsIdempotentByKeyAndCreatesOnlyAtStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	o := &maildir.Output{Path: dir}
	o.Provision(plugin.Env{})
	if err := o.Init(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Fatal("Init created the Maildir; only Start may")
	}
	if err := o.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	msg := message.New(enginetest.Mix(1)[0], message.Source{Input: "in", ID: "1"})
	for range 2 {
		if _, err := o.Deliver(context.Background(), msg, plugin.Delivery{Key: "k1"}); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := enginetest.ReadMaildir(dir)
	if len(got) != 1 || !bytes.Equal(got[0], enginetest.Mix(1)[0]) {
		t.Fatalf("a retry with the same key wrote %d copies", len(got))
	}
}

// The ledger holds what the source holds: after 3 batches of 100 messages
// through a Maildir input it holds nothing when the input deletes, and one
// record per file when it keeps them.
func TestLedgerFollowsTheMaildir(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep=%v", keep), func(t *testing.T) {
			dir := t.TempDir()
			conf := filepath.Join(dir, "mailflow.toml")
			os.WriteFile(conf, fmt.Appendf(nil, "state_dir = \"state\"\n[[input]]\nname = \"src\"\ntype = \"maildir\"\npath = \"src\"\non_settled = %q\npipeline = \"p\"\n[[pipeline]]\nname = \"p\"\noutputs = [\"dst\"]\n[[output]]\nname = \"dst\"\ntype = \"maildir\"\npath = \"dst\"\n", map[bool]string{true: "keep", false: "delete"}[keep]), 0o600)
			cfg, err := config.Load(conf, plugins.Default)
			if err != nil {
				t.Fatal(err)
			}
			e, err := engine.Open(cfg, plugins.Default, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			src := filepath.Join(dir, "src")
			for batch := range 3 {
				msgs := make([][]byte, 100)
				for i := range msgs {
					msgs[i] = enginetest.Message(enginetest.Plain, batch*100+i, 0)
				}
				if err := enginetest.WriteMaildir(src, msgs); err != nil {
					t.Fatal(err)
				}
				if st, err := e.PollOnce(context.Background(), "src"); err != nil || st.Delivered != 100 {
					t.Fatalf("batch %d: %v %v", batch, st, err)
				}
			}
			e.PollOnce(context.Background(), "src") // sees the source as it is now
			files, _ := enginetest.ReadMaildir(src)
			records := e.Ledger.Stats()[0].Records
			if records != len(files) || (keep && records != 300) || (!keep && records != 0) {
				t.Fatalf("%d records for %d files at the source", records, len(files))
			}
			if got, _ := enginetest.ReadMaildir(filepath.Join(dir, "dst")); len(got) != 300 {
				t.Fatalf("%d delivered", len(got))
			}
		})
	}
}

// The key on_settled replaces, delete, still works: delete = false keeps
// the files, and the log says what to write instead.
func TestOldDeleteKeyKeepsAndWarns(t *testing.T) {
	dir := t.TempDir()
	if err := enginetest.WriteMaildir(dir, enginetest.Mix(2)); err != nil {
		t.Fatal(err)
	}
	no := false
	in := &maildir.Input{Path: dir, Delete: &no}
	var log bytes.Buffer
	if err := in.Provision(plugin.Env{BaseDir: "/", Logger: slog.New(slog.NewTextHandler(&log, nil))}); err != nil {
		t.Fatal(err)
	}
	if err := in.Init(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), `delete = false is deprecated; write on_settled = \"keep\" instead`) {
		t.Fatalf("no warning naming on_settled: %q", log.String())
	}
	s, _ := in.Open(context.Background())
	l, err := s.List(context.Background())
	if err != nil || !l.Keeps {
		t.Fatalf("listing %+v %v", l, err)
	}
	s.Commit(context.Background(), l.Items)
	s.Close(context.Background())
	if left, _ := enginetest.ReadMaildir(dir); len(left) != 2 {
		t.Fatalf("%d of 2 files left", len(left))
	}
	both := &maildir.Input{Path: dir, OnSettled: "delete", Delete: &no}
	if err := both.Init(); err == nil {
		t.Fatal("on_settled and delete together must be an error")
	}
	if err := (&maildir.Input{Path: dir, OnSettled: "flag:$Forwarded"}).Init(); err == nil {
		t.Fatal(`on_settled = "flag:…" must be an error for a Maildir`)
	}
}

// A message that is, byte for byte, a file the smtp input spooled is
// delivered as a second name of that file (a hard link), which holds the
// whole message at once; any other (changed by a filter, a spool file
// whose length or checksum is not the message's, one gone, or none) is
// written as a copy.
func TestOutputLinksASpooledFileOnlyWhenItIsTheMessage(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "out")
	o := &maildir.Output{Path: dir}
	o.Provision(plugin.Env{})
	if err := o.Init(); err != nil {
		t.Fatal(err)
	}
	if err := o.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	raw := enginetest.Mix(1)[0]
	sum := crc32.Checksum(raw, crc32.MakeTable(crc32.Castagnoli))
	spoolFile := func(name string) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name   string
		file   *spoolfile.File
		edit   bool
		linked bool
	}{
		{"spooled", &spoolfile.File{Path: spoolFile("a"), Size: int64(len(raw)), CRC: sum}, false, true},
		{"changed by a filter", &spoolfile.File{Path: spoolFile("b"), Size: int64(len(raw)), CRC: sum}, true, false},
		{"another checksum", &spoolfile.File{Path: spoolFile("c"), Size: int64(len(raw)), CRC: sum + 1}, false, false},
		{"another length", &spoolfile.File{Path: spoolFile("d"), Size: int64(len(raw)) - 1, CRC: sum}, false, false},
		{"gone from the spool", &spoolfile.File{Path: filepath.Join(tmp, "gone"), Size: int64(len(raw)), CRC: sum}, false, false},
		{"not spooled", nil, false, false},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := fmt.Sprintf("link-test-%d", i)
			if c.file != nil {
				spoolfile.Add("in", id, *c.file)
				defer spoolfile.Remove("in", id)
			}
			msg := message.New(raw, message.Source{Input: "in", ID: id})
			want := raw
			if c.edit {
				msg.Header.Set("X-Edited", "yes")
				msg.MarkHeaderChanged()
				var b bytes.Buffer
				msg.WriteTo(&b)
				want = b.Bytes()
			}
			key := fmt.Sprintf("k%d", i)
			if _, err := o.Deliver(context.Background(), msg, plugin.Delivery{Key: key}); err != nil {
				t.Fatal(err)
			}
			matches, _ := filepath.Glob(filepath.Join(dir, "new", key+".*"))
			if len(matches) != 1 {
				t.Fatalf("new/ holds %v", matches)
			}
			got, _ := os.ReadFile(matches[0])
			if !bytes.Equal(got, want) {
				t.Fatalf("delivered %q", got)
			}
			fi, _ := os.Stat(matches[0])
			linked := false
			if c.file != nil {
				if si, err := os.Stat(c.file.Path); err == nil {
					linked = os.SameFile(fi, si)
				}
			}
			if linked != c.linked {
				t.Fatalf("linked = %v, want %v", linked, c.linked)
			}
			if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
				t.Fatalf("tmp/ holds %d files", len(ents))
			}
		})
	}
}
