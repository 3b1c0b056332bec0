package quarantine

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailflow/mailflow/engine/message"
)

func TestPutListGetClaimDelete(t *testing.T) {
	q, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	raw := "From: a@example.org\r\nMessage-ID: <q1@example.org>\r\n\r\nbody\r\n"
	msg, err := message.Read(strings.NewReader(raw), message.Source{Input: "in", ID: "7"}, message.DefaultSpool)
	if err != nil {
		t.Fatal(err)
	}
	e, err := q.Put(msg, Entry{Pipeline: "p", Reason: "550 no", Held: true})
	msg.Close()
	if err != nil {
		t.Fatal(err)
	}
	list, err := q.List()
	if err != nil || len(list) != 1 || list[0].ID != e.ID || !list[0].Held || list[0].MessageID != "q1@example.org" || list[0].SourceID != "7" {
		t.Fatalf("list: %+v %v", list, err)
	}
	_, got, err := q.Get(e.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(got.Original())
	got.Close()
	if !bytes.Equal(b, []byte(raw)) {
		t.Fatalf("kept %q, want the original bytes", b)
	}
	// A claimed entry cannot be deleted by another.
	release, err := q.Claim(e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Delete(e.ID); err == nil {
		t.Fatal("deleted an entry another holds")
	}
	release()
	if err := q.Delete(e.ID); err != nil {
		t.Fatal(err)
	}
	if list, _ := q.List(); len(list) != 0 {
		t.Fatalf("still listed: %+v", list)
	}
	if _, _, err := q.Get("../x"); err == nil {
		t.Fatal("a path was taken for an id")
	}
}

// Records written before "held" was the word say "kept"; they are read as
// held.
func TestRecordsThatSayKeptAreHeld(t *testing.T) {
	dir := t.TempDir()
	q, _ := Open(dir)
	os.WriteFile(filepath.Join(dir, "20261101T000000-abcd.json"), []byte(`{"id":"20261101T000000-abcd","reason":"x","kept":true}`), 0o600)
	list, err := q.List()
	if err != nil || len(list) != 1 || !list[0].Held || list[0].WasKept {
		t.Fatalf("%+v %v", list, err)
	}
}
