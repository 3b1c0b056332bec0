package scripts

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"

	"github.com/mailflow/mailflow/engine/message"
)

// loadAt writes src to path (a fixed place, so that a second load is the
// same script) and loads it.
func loadAt(t *testing.T, path, src string, limits plugin.ScriptLimits) *Script {
	t.Helper()
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Load(path, limits)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newMail(id, body string) *message.Message {
	h := ""
	if id != "" {
		h = "Message-ID: <" + id + ">\r\n"
	}
	return message.New([]byte(h+"From: a@example.org\r\nSubject: s\r\n\r\n"+body+"\r\n"), message.Source{Input: "in", ID: id + body})
}

// store.* keeps values across a reload and a restart (the script loaded
// again from the same file, the database reopened).
func TestStoreSurvivesReloadAndRestart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "count.lua")
	src := `function filter(msg)
  local n = store.add("seen")
  store.set("last", msg:header("Subject") .. n)
  if n == 3 then
    assert(store.get("last") == "s3")
    store.delete("last")
    assert(store.get("last") == nil)
  end
end`
	limits := plugin.ScriptLimits{StoreDir: dir}
	for run := range 3 {
		s := loadAt(t, path, src, limits)
		if _, err := s.Filter(context.Background(), newMail(fmt.Sprint(run), "x")); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		s.Close()
	}
	s := loadAt(t, path, `function filter(msg) assert(store.get("seen") == 3, tostring(store.get("seen"))) end`, limits)
	defer s.Close()
	if _, err := s.Filter(context.Background(), newMail("x", "y")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "scripts.db")); err != nil {
		t.Fatal("no scripts.db in the state_dir")
	}
}

// duplicate(): the same Message-ID in another message, across a restart,
// is a duplicate; the same message filtered again (a retry) is not; mail
// without a Message-ID never is.
func TestDuplicateAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dedupe.lua")
	src := `function filter(msg) if duplicate() then return drop("duplicate") end end`
	limits := plugin.ScriptLimits{StoreDir: dir}
	verdict := func(m *message.Message) plugin.Action {
		s := loadAt(t, path, src, limits) // each a new process, as far as the store goes
		defer s.Close()
		v, err := s.Filter(context.Background(), m)
		if err != nil {
			t.Fatal(err)
		}
		return v.Action
	}
	first := newMail("one@x", "first copy")
	if verdict(first) != plugin.ActionKeep {
		t.Fatal("the first is no duplicate")
	}
	if verdict(newMail("one@x", "first copy")) != plugin.ActionKeep {
		t.Fatal("the same message filtered again (a retry) was taken for its own duplicate")
	}
	if verdict(newMail("one@x", "second copy")) != plugin.ActionDrop {
		t.Fatal("another message with the same Message-ID after a restart was not detected")
	}
	if verdict(newMail("", "a")) != plugin.ActionKeep || verdict(newMail("", "b")) != plugin.ActionKeep {
		t.Fatal("mail without a Message-ID was taken for a duplicate")
	}
	// A window: seconds = 1.
	s := loadAt(t, path, `function filter(msg) if duplicate{key = "k", seconds = 1} then return drop("dup") end end`, limits)
	defer s.Close()
	if v, _ := s.Filter(context.Background(), newMail("a@x", "1")); v.Action != plugin.ActionKeep {
		t.Fatal("first in the window")
	}
	if v, _ := s.Filter(context.Background(), newMail("b@x", "2")); v.Action != plugin.ActionDrop {
		t.Fatal("same key within the window")
	}
	time.Sleep(1100 * time.Millisecond)
	if v, _ := s.Filter(context.Background(), newMail("c@x", "3")); v.Action != plugin.ActionKeep {
		t.Fatal("same key after the window")
	}
}

// The store is bounded in keys and bytes, the oldest going first; a ttl
// expires a value; with no StoreDir ("mailflow test") nothing is written.
func TestStoreBoundsAndExpiry(t *testing.T) {
	for _, dir := range []string{t.TempDir(), ""} {
		t.Run(fmt.Sprintf("dir=%q", dir), func(t *testing.T) {
			src := `function filter(msg)
  for i = 1, 5 do store.set("k" .. i, string.rep("x", 10)) end
  assert(store.get("k1") == nil and store.get("k2") == nil, "the oldest stay")
  assert(store.get("k5") ~= nil)
  store.set("short", "v", 1)
end`
			path := filepath.Join(t.TempDir(), "bound.lua")
			s := loadAt(t, path, src, plugin.ScriptLimits{StoreDir: dir, StoreMaxKeys: 3})
			defer s.Close()
			if _, err := s.Filter(context.Background(), newMail("x", "y")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(1100 * time.Millisecond)
			s2 := loadAt(t, path+"2", `function filter(msg) end`, plugin.ScriptLimits{})
			defer s2.Close()
			kv, _ := s.kv()
			if _, ok, _ := kv.view("short"); ok {
				t.Fatal("a value past its ttl is still there")
			}
			big := loadAt(t, path+"3", `function filter(msg) store.set("big", string.rep("x", 2000)) end`, plugin.ScriptLimits{StoreDir: dir, StoreMaxBytes: 1000})
			defer big.Close()
			if _, err := big.Filter(context.Background(), newMail("x", "y")); err == nil {
				t.Fatal("a value larger than the store was taken")
			}
		})
	}
	// No StoreDir: no file.
	dir := t.TempDir()
	s := loadAt(t, filepath.Join(dir, "m.lua"), `function filter(msg) store.set("a", 1) end`, plugin.ScriptLimits{})
	defer s.Close()
	s.Filter(context.Background(), newMail("x", "y"))
	if _, err := os.Stat(filepath.Join(dir, "scripts.db")); err == nil {
		t.Fatal("a store in memory wrote a file")
	}
}

// Every address the API returns has its parts, RFC 5233's detail among
// them, with the separator the config gives.
func TestAddressParts(t *testing.T) {
	m := message.New([]byte("To: Me <me+lists@example.org>, plain@example.org, a+b+c@example.org\r\nCc: x-y@example.org\r\n\r\nbody\r\n"), message.Source{Input: "in", ID: "1"})
	s := load(t, `function filter(msg)
  local to = msg:to()
  assert(to[1].localpart == "me+lists", to[1].localpart)
  assert(to[1].domain == "example.org" and to[1].user == "me" and to[1].detail == "lists")
  assert(to[2].user == "plain" and to[2].detail == nil, "no separator: no detail")
  assert(to[3].user == "a" and to[3].detail == "b+c", "the first separator splits")
  assert(msg:cc()[1].user == "x-y" and msg:cc()[1].detail == nil, "- is no separator by default")
end`, plugin.ScriptLimits{})
	if _, err := s.Filter(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	s = load(t, `function filter(msg)
  local cc = msg:cc()[1]
  assert(cc.user == "x" and cc.detail == "y", "subaddress_separator = \"-\"")
  assert(msg:to()[1].detail == nil)
end`, plugin.ScriptLimits{Separator: "-"})
	if _, err := s.Filter(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

// The in-memory state is bounded in bytes like the store: the issue's
// 40 MiB per message over 25 messages is refused at the first, instead of
// growing the process to a gigabyte.
func TestStateIsBoundedInBytes(t *testing.T) {
	s := load(t, `function filter(msg)
  state[msg.id] = string.rep("x", 40 * 1024 * 1024)
end`, plugin.ScriptLimits{})
	_, err := s.Filter(context.Background(), newMail("a", "x"))
	if err == nil || !strings.Contains(err.Error(), "state is full") {
		t.Fatalf("40 MiB into state: %v", err)
	}
	s = load(t, `function filter(msg)
  state[msg.id] = string.rep("x", 1024)
  state.add("n")
end`, plugin.ScriptLimits{})
	for i := range 100 {
		if _, err := s.Filter(context.Background(), newMail(fmt.Sprint(i), "x")); err != nil {
			t.Fatalf("small values: %v", err)
		}
	}
}
