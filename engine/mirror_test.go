package engine_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/plugins"
)

// keptBox is a source that keeps what mailflow settles, with flags and a
// change counter per message, as an IMAP folder with CONDSTORE has: with
// delta set its sessions list only what changed since a checkpoint.
type keptBox struct {
	mu      sync.Mutex
	delta   bool
	takes   bool // commit removes the messages (a delete settle action)
	modseq  uint64
	msgs    map[string]*keptMsg
	deleted []uint64 // the modseq of each deletion
	scheme  string   // "" is "kept"
	lists   int      // listings given
	listed  int      // items they held, in all
	fetched int
}

type keptMsg struct {
	data   []byte
	flags  []string
	modseq uint64
}

func newKeptBox(delta bool, n int) *keptBox {
	b := &keptBox{delta: delta, msgs: map[string]*keptMsg{}}
	for i, m := range enginetest.Mix(n) {
		b.add(fmt.Sprintf("m%03d", i), m, []string{})
	}
	return b
}

func (b *keptBox) add(id string, data []byte, flags []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.modseq++
	b.msgs[id] = &keptMsg{data: data, flags: flags, modseq: b.modseq}
}

func (b *keptBox) setFlags(id string, flags ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.modseq++
	b.msgs[id].flags, b.msgs[id].modseq = flags, b.modseq
}

func (b *keptBox) remove(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.modseq++
	delete(b.msgs, id)
	b.deleted = append(b.deleted, b.modseq)
}

// renumber gives every message a new id under a new scheme, as an mbox
// rewritten by another program or a folder whose UIDVALIDITY changed.
func (b *keptBox) renumber(scheme string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	renamed := map[string]*keptMsg{}
	for id, m := range b.msgs {
		renamed["n"+id] = m
	}
	b.msgs, b.scheme = renamed, scheme
}

func (b *keptBox) Open(context.Context) (plugin.Session, error) {
	if b.delta {
		return &keptDeltaSession{keptSession{b}}, nil
	}
	return &keptSession{b}, nil
}

type keptSession struct{ b *keptBox }

// since lists the messages changed after modseq cp: partially, unless a
// message was deleted since cp (then everything, to say what is gone).
func (s *keptSession) since(cp uint64) plugin.Delta {
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	scheme := b.scheme
	if scheme == "" {
		scheme = "kept"
	}
	d := plugin.Delta{Listing: plugin.Listing{Scheme: scheme, Stable: true, Unique: true, Keeps: !b.takes}, Partial: cp > 0}
	if cp > 0 && (cp&1 == 1) != b.takes {
		d.Partial = false // the settle action changed: everything, to commit it
	}
	for _, at := range b.deleted {
		if at > cp>>1 {
			d.Partial = false
		}
	}
	for id, m := range b.msgs {
		if m.modseq > cp>>1 || !d.Partial {
			d.Items = append(d.Items, plugin.Item{ID: id, Size: int64(len(m.data)), Flags: slices.Clone(m.flags), Folder: "INBOX", Identity: id})
		}
	}
	mark := b.modseq << 1
	if b.takes {
		mark |= 1
	}
	d.Checkpoint = binary.BigEndian.AppendUint64(nil, mark)
	b.lists++
	b.listed += len(d.Items)
	return d
}

func (s *keptSession) List(ctx context.Context) (plugin.Listing, error) {
	return s.since(0).Listing, nil
}

func (s *keptSession) Fetch(ctx context.Context, items []plugin.Item, each func(plugin.Item, io.Reader, error) error) error {
	for _, it := range items {
		s.b.mu.Lock()
		data := s.b.msgs[it.ID].data
		s.b.fetched++
		s.b.mu.Unlock()
		if err := each(it, bytesReader(data), nil); err != nil {
			return err
		}
	}
	return nil
}

func (s *keptSession) Commit(_ context.Context, items []plugin.Item) ([]plugin.Item, error) {
	if s.b.takes {
		for _, it := range items {
			s.b.remove(it.ID)
		}
	}
	return nil, nil
}
func (s *keptSession) Close(context.Context) error { return nil }

type keptDeltaSession struct{ keptSession }

func (s *keptDeltaSession) ListSince(ctx context.Context, cp []byte) (plugin.Delta, error) {
	var at uint64
	if len(cp) == 8 {
		at = binary.BigEndian.Uint64(cp)
	}
	return s.since(at), nil // modseq << 1 | takes: since compares both
}

// mirrorOutput holds what it was given, by source id, with its flags, and
// says where it put each.
type mirrorOutput struct {
	mu       sync.Mutex
	held     map[string][]string // "where" → flags
	deletes  bool
	failNext error
	sets     int
}

func (o *mirrorOutput) Deliver(ctx context.Context, msg *message.Message, d plugin.Delivery) ([]plugin.RecipientResult, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.failNext; err != nil {
		// A recipient refused for now: the message is deferred without the
		// output backing off (a whole-message failure would stop polling).
		o.failNext = nil
		return []plugin.RecipientResult{{Recipient: "box@example.net", Err: err}}, nil
	}
	where := "at-" + msg.Source.ID
	o.held[where] = slices.Clone(msg.Flags)
	d.Placed(where)
	return nil, nil
}

func (o *mirrorOutput) SetFlags(ctx context.Context, p plugin.Placement, added, removed []string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	flags, ok := o.held[p.Where]
	if !ok {
		return plugin.ErrNotHeld
	}
	o.sets++
	flags = slices.DeleteFunc(flags, func(f string) bool { return slices.Contains(removed, f) })
	o.held[p.Where] = append(flags, added...)
	return nil
}

func (o *mirrorOutput) MirrorsDeletes() bool { return o.deletes }

func (o *mirrorOutput) Delete(ctx context.Context, p plugin.Placement) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.held[p.Where]; !ok {
		return plugin.ErrNotHeld
	}
	delete(o.held, p.Where)
	return nil
}

func (o *mirrorOutput) flags(id string) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	f := slices.Clone(o.held["at-"+id])
	slices.Sort(f)
	return f
}

func openKept(t *testing.T, box plugin.Input, out plugin.Output, opts ...engine.Option) *engine.Engine {
	t.Helper()
	reg := &plugins.Registry{}
	reg.AddInput("kept", func() plugin.Input { return box })
	reg.AddOutput("mirror", func() plugin.Output { return out })
	conf := filepath.Join(t.TempDir(), "mailflow.toml")
	os.WriteFile(conf, []byte("state_dir = \"state\"\n[[input]]\nname = \"box\"\ntype = \"kept\"\npipeline = \"p\"\n[[pipeline]]\nname = \"p\"\noutputs = [\"out\"]\n[[output]]\nname = \"out\"\ntype = \"mirror\"\n"), 0o600)
	cfg, err := config.Load(conf, reg)
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(cfg, reg, slog.New(slog.NewTextHandler(io.Discard, nil)), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// Flags changed at a source that keeps its mail, after the messages were
// delivered, reach the output: the ones added are set, the ones removed
// cleared, and nothing is delivered twice.
func TestFlagChangesAtTheSourceReachTheOutput(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(fmt.Sprintf("delta %v", delta), func(t *testing.T) {
			box, out := newKeptBox(delta, 6), &mirrorOutput{held: map[string][]string{}}
			box.setFlags("m002", `\Seen`, "$label1")
			e := openKept(t, box, out)
			if st, err := e.PollOnce(context.Background(), "box"); err != nil || st.Delivered != 6 {
				t.Fatalf("first poll: %v %v", st, err)
			}
			box.setFlags("m001", `\Flagged`)
			box.setFlags("m002", `\Seen`) // a keyword removed
			st, err := e.PollOnce(context.Background(), "box")
			if err != nil || st.Updated != 2 || st.Delivered != 0 || st.Fetched != 0 {
				t.Fatalf("second poll: %v %v; want 2 updated, nothing fetched", st, err)
			}
			if got := out.flags("m001"); !slices.Equal(got, []string{`\Flagged`}) {
				t.Fatalf("m001 at the output: %v", got)
			}
			if got := out.flags("m002"); !slices.Equal(got, []string{`\Seen`}) {
				t.Fatalf("m002 at the output: %v", got)
			}
			// Nothing changed: nothing is done, and with a delta nothing is listed.
			lists, listed := box.lists, box.listed
			st, _ = e.PollOnce(context.Background(), "box")
			if st.Updated != 0 || out.sets != 2 {
				t.Fatalf("third poll: %v, %d flag changes made in all", st, out.sets)
			}
			if delta && (box.lists != lists+1 || box.listed != listed) {
				t.Fatalf("an unchanged mailbox listed %d messages", box.listed-listed)
			}
		})
	}
}

// batchOutput is a mirrorOutput that carries flag changes many at once,
// and fails those for the places of fail.
type batchOutput struct {
	*mirrorOutput
	calls [][]plugin.FlagChange
	fail  map[string]bool
}

func (o *batchOutput) SetFlagsMany(ctx context.Context, changes []plugin.FlagChange) []error {
	o.mu.Lock()
	o.calls = append(o.calls, changes)
	o.mu.Unlock()
	errs := make([]error, len(changes))
	for i, ch := range changes {
		if o.fail[ch.Placement.Where] {
			errs[i] = errors.New("NO [SERVERBUG] try later")
			continue
		}
		errs[i] = o.SetFlags(ctx, ch.Placement, ch.Added, ch.Removed)
	}
	return errs
}

// An output that carries many flag changes at once is given every change
// of a poll in one call; each change is answered on its own: one it failed
// is tried again on the next poll, one whose copy is gone is not, and the
// rest are recorded.
func TestFlagChangesGoToABatchMirrorInOneCall(t *testing.T) {
	box := newKeptBox(true, 6)
	out := &batchOutput{mirrorOutput: &mirrorOutput{held: map[string][]string{}}, fail: map[string]bool{"at-m003": true}}
	e := openKept(t, box, out)
	if st, err := e.PollOnce(context.Background(), "box"); err != nil || st.Delivered != 6 {
		t.Fatalf("first poll: %v %v", st, err)
	}
	out.mu.Lock()
	delete(out.held, "at-m004") // someone deleted it at the destination
	out.mu.Unlock()
	for _, id := range []string{"m001", "m002", "m003", "m004"} {
		box.setFlags(id, `\Flagged`)
	}
	st, err := e.PollOnce(context.Background(), "box")
	if err != nil || st.Updated != 3 || st.Deferred != 1 || len(out.calls) != 1 || len(out.calls[0]) != 4 {
		t.Fatalf("second poll: %v %v, %d calls; want 3 updated, 1 deferred, in one call of 4", st, err, len(out.calls))
	}
	if got := out.flags("m001"); !slices.Equal(got, []string{`\Flagged`}) {
		t.Fatalf("m001 at the output: %v", got)
	}
	if rec, _ := e.Ledger.Get("box", "m003"); len(rec.Flags) != 0 {
		t.Fatalf("a change the output failed was recorded as carried: %v", rec.Flags)
	}
	out.fail = nil
	st, err = e.PollOnce(context.Background(), "box")
	if err != nil || st.Updated != 1 || len(out.calls) != 2 || len(out.calls[1]) != 1 || out.calls[1][0].Placement.Where != "at-m003" {
		t.Fatalf("third poll: %v %v; want m003 alone carried again", st, err)
	}
}

// plainOutput takes messages and cannot change their flags (SMTP, a
// Maildir).
type plainOutput struct{ n atomic.Int32 }

func (o *plainOutput) Deliver(context.Context, *message.Message, plugin.Delivery) ([]plugin.RecipientResult, error) {
	o.n.Add(1)
	return nil, nil
}

// Flags changed at the source of messages delivered to an output that
// cannot change flags are recorded, and not reported as carried.
func TestFlagChangesAnOutputCannotCarryAreNotReportedUpdated(t *testing.T) {
	box, out := newKeptBox(false, 3), &plainOutput{}
	e := openKept(t, box, out)
	if st, err := e.PollOnce(context.Background(), "box"); err != nil || st.Delivered != 3 {
		t.Fatalf("first poll: %v %v", st, err)
	}
	box.setFlags("m001", `\Flagged`)
	if st, err := e.PollOnce(context.Background(), "box"); err != nil || st.Updated != 0 || st.Delivered != 0 {
		t.Fatalf("second poll: %v %v; want nothing updated, nothing delivered", st, err)
	}
	if rec, _ := e.Ledger.Get("box", "m001"); !slices.Equal(rec.Flags, []string{`\Flagged`}) {
		t.Fatalf("the new flags are not recorded: %v", rec.Flags)
	}
}

// A delta listing's checkpoint is kept only once every message it listed
// was dealt with: a message an output refused for now is listed again.
func TestDeltaCheckpointWaitsForDeferredMessages(t *testing.T) {
	box, out := newKeptBox(true, 3), &mirrorOutput{held: map[string][]string{}}
	e := openKept(t, box, out)
	e.PollOnce(context.Background(), "box")
	box.add("m100", enginetest.Message(enginetest.Plain, 100, 0), []string{})
	out.failNext = errors.New("451 try later")
	if st, _ := e.PollOnce(context.Background(), "box"); st.Deferred != 1 {
		t.Fatalf("poll with a refusal: %v", st)
	}
	if st, _ := e.PollOnce(context.Background(), "box"); st.Delivered != 1 {
		t.Fatalf("the deferred message was not listed again: %v", st)
	}
	if st, _ := e.PollOnce(context.Background(), "box"); st.Fetched != 0 || st.Delivered != 0 {
		t.Fatalf("after it went through: %v", st)
	}
}

// A message someone deleted at the source is deleted at an output that
// mirrors deletions, and its record forgotten; an output that does not
// keeps it.
func TestDeletionsAtTheSourceAreMirroredOnlyWhenAsked(t *testing.T) {
	for _, mirror := range []bool{false, true} {
		t.Run(fmt.Sprintf("mirror %v", mirror), func(t *testing.T) {
			box, out := newKeptBox(true, 4), &mirrorOutput{held: map[string][]string{}, deletes: mirror}
			e := openKept(t, box, out)
			e.PollOnce(context.Background(), "box")
			box.remove("m003")
			st, err := e.PollOnce(context.Background(), "box")
			if err != nil {
				t.Fatal(err)
			}
			_, there := out.held["at-m003"]
			if there == mirror || (st.Deleted == 1) != mirror {
				t.Fatalf("deleted %d; still at the output: %v", st.Deleted, there)
			}
			if _, ok := e.Ledger.Get("box", "m003"); ok {
				t.Fatal("the record of a message gone from the source was kept")
			}
		})
	}
}

// When a source that keeps its mail names every message anew (its scheme
// changed), the old ids leaving the listing are no deletions: an output
// that mirrors deletions keeps every message, nothing is delivered twice,
// and a deletion after that is mirrored under the new ids.
func TestRenumberedSourceDeletesNothingAtTheOutput(t *testing.T) {
	box, out := newKeptBox(false, 4), &mirrorOutput{held: map[string][]string{}, deletes: true}
	e := openKept(t, box, out)
	if st, err := e.PollOnce(context.Background(), "box"); err != nil || st.Delivered != 4 {
		t.Fatalf("first poll: %v %v", st, err)
	}
	box.renumber("kept/2")
	st, err := e.PollOnce(context.Background(), "box")
	if err != nil || st.Delivered != 0 || st.Deleted != 0 || st.Skipped != 4 {
		t.Fatalf("poll after the renumbering: %v %v; want 4 skipped, none delivered or deleted", st, err)
	}
	if n := len(out.held); n != 4 {
		t.Fatalf("the output holds %d messages after the source renumbered them, want 4", n)
	}
	if st, _ := e.PollOnce(context.Background(), "box"); st.Fetched != 0 || st.Deleted != 0 {
		t.Fatalf("next poll: %v", st)
	}
	box.remove("nm002")
	if st, _ := e.PollOnce(context.Background(), "box"); st.Deleted != 1 || len(out.held) != 3 {
		t.Fatalf("a deletion under the new ids: %v, the output holds %d", st, len(out.held))
	}
}

func bytesReader(b []byte) io.Reader { return &sliceReader{b: b} }

type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// Messages mailflow itself removed from the source (migrate
// --delete-source: the same mailbox polled once with a deleting settle
// action) are not taken for deletions to mirror when the source is later
// polled keeping its mail again.
func TestMessagesMailflowRemovedAreNotMirroredAsDeletions(t *testing.T) {
	box, out := newKeptBox(true, 3), &mirrorOutput{held: map[string][]string{}, deletes: true}
	e := openKept(t, box, out)
	e.PollOnce(context.Background(), "box")
	box.takes = true
	if st, _ := e.PollOnce(context.Background(), "box"); st.Skipped != 3 || len(box.msgs) != 0 {
		t.Fatalf("the deleting poll: %v, %d left", st, len(box.msgs))
	}
	box.takes = false
	st, _ := e.PollOnce(context.Background(), "box")
	if st.Deleted != 0 || len(out.held) != 3 {
		t.Fatalf("after: %v; %d left at the output, want all 3", st, len(out.held))
	}
}

// meetingOutput is a batchOutput whose deliveries wait for a batch of
// flag changes to begin (for at most five seconds, then refuse the
// message for now).
type meetingOutput struct {
	*batchOutput
	carrying chan struct{}
	once     sync.Once
}

func (o *meetingOutput) SetFlagsMany(ctx context.Context, changes []plugin.FlagChange) []error {
	o.once.Do(func() { close(o.carrying) })
	return o.batchOutput.SetFlagsMany(ctx, changes)
}

func (o *meetingOutput) Deliver(ctx context.Context, msg *message.Message, d plugin.Delivery) ([]plugin.RecipientResult, error) {
	select {
	case <-o.carrying:
	case <-time.After(5 * time.Second):
		return nil, errors.New("no flag change began while this message was delivered")
	}
	return o.batchOutput.Deliver(ctx, msg, d)
}

// A poll carries the flag changes while it fetches and delivers the new
// messages, not after them: one after the other, a later pass of a
// migration waited for both in turn.
func TestFlagChangesAreCarriedWhileNewMessagesCome(t *testing.T) {
	box := newKeptBox(true, 4)
	out := &meetingOutput{batchOutput: &batchOutput{mirrorOutput: &mirrorOutput{held: map[string][]string{}}}, carrying: make(chan struct{})}
	close(out.carrying) // the first poll has no changes to wait for
	e := openKept(t, box, out)
	if st, err := e.PollOnce(context.Background(), "box"); err != nil || st.Delivered != 4 {
		t.Fatalf("first poll: %v %v", st, err)
	}
	out.carrying, out.once = make(chan struct{}), sync.Once{}
	box.setFlags("m001", `\Flagged`)
	box.setFlags("m002", `\Seen`)
	box.add("m100", enginetest.Mix(1)[0], nil)
	st, err := e.PollOnce(context.Background(), "box")
	if err != nil || st.Updated != 2 || st.Delivered != 1 {
		t.Fatalf("second poll: %v %v; want 2 updated and the new message delivered while they were", st, err)
	}
	if got := out.flags("m001"); !slices.Equal(got, []string{`\Flagged`}) {
		t.Fatalf("m001 at the output: %v", got)
	}
}
