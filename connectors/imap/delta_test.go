package imap

import (
	"context"
	"log/slog"
	"reflect"
	"testing"

	"github.com/mailflow/mailflow/connectors/internal/endpoint"
	"github.com/mailflow/mailflow/engine/plugin"
)

// A checkpoint reads back as it was written, folder names with spaces,
// quotes and non-ASCII included; anything else is not a checkpoint.
func TestCheckpointRoundTrip(t *testing.T) {
	cp := checkpoint{settle: "move:Done", selection: `since="720h" unseen=true min=0 max=0`, folders: map[string]mark{
		"INBOX":          {validity: 1700000000, modSeq: 42, uidNext: 101, messages: 100},
		`Sent "Items"`:   {validity: 7, modSeq: 0, uidNext: 1, messages: 0},
		"Отправленные/x": {validity: 9, modSeq: 1 << 40, uidNext: 5, messages: 3},
	}}
	got, ok := decodeCheckpoint(cp.encode())
	if !ok || !reflect.DeepEqual(got, cp) {
		t.Fatalf("decoded %+v (%v), want %+v", got, ok, cp)
	}
	for _, bad := range []string{"", "mailflow-imap-delta 0\n", checkpointVersion + "\nfolder INBOX 1 2 3 4\n", checkpointVersion + "\nfolder \"INBOX\" 1 2\n", checkpointVersion + "\nmore \"x\"\n"} {
		if _, ok := decodeCheckpoint([]byte(bad)); ok {
			t.Errorf("%q was taken for a checkpoint", bad)
		}
	}
}

// "Archive/7/" names the messages of Archive under UIDVALIDITY 7, and
// everything in a folder Archive/7: such a folder is never named complete.
func TestCompletePrefixesThatCollide(t *testing.T) {
	folders := []mailbox{{path: "Archive"}, {path: "Archive/7"}, {path: "Archive/2024"}}
	if !collides(folders, "Archive", 7) {
		t.Error("Archive/7/ collides with the folder Archive/7")
	}
	if collides(folders, "Archive", 8) || collides(folders, "Archive/2024", 7) {
		t.Error("no folder is called Archive/8 or Archive/2024/7")
	}
}

// Without CONDSTORE (go-imap's memory server) a delta listing is a full
// one, with no checkpoint to come back to; every message's flags are known.
func TestWithoutCondStoreEveryListingIsWhole(t *testing.T) {
	addr := memServer(t)
	msgs := sample(8)
	seed(t, login(t, addr, "src"), msgs)
	in := &Input{Endpoint: Endpoint{Settings: endpoint.Settings{Address: addr, TLS: "none", Username: "src", Password: "p",
		AllowPlaintextAuth: true}}, Folders: []string{"*"}, OnSettled: "keep"}
	in.Provision(plugin.Env{Name: "in", Logger: slog.New(slog.NewTextHandler(testLog, nil)), BaseDir: t.TempDir()})
	if err := in.Init(); err != nil {
		t.Fatal(err)
	}
	sess, err := in.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close(context.Background())
	for _, cp := range [][]byte{nil, []byte(checkpointVersion + "\n")} {
		d, err := sess.(plugin.DeltaSession).ListSince(context.Background(), cp)
		if err != nil || d.Partial || d.Checkpoint != nil || len(d.Items) != len(msgs) {
			t.Fatalf("partial %v, checkpoint %q, %d items of %d, %v", d.Partial, d.Checkpoint, len(d.Items), len(msgs), err)
		}
		for _, it := range d.Items {
			if it.Flags == nil {
				t.Fatalf("%s: flags not known", it.ID)
			}
		}
	}
}
