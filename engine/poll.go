package engine

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/ledger"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/engine/quarantine"
)

// PollOnce runs one poll of the named input: it lists the source, decides
// per message from the ledger what to do, fetches what needs fetching and
// takes each message through its pipeline, then commits at the source what
// is settled, and forgets the records of messages that left the source.
func (e *Engine) PollOnce(ctx context.Context, name string) (Stats, error) {
	mu := e.inputLock(name)
	mu.Lock()
	defer mu.Unlock()
	if e.Ledger == nil {
		return Stats{}, errors.New("engine opened without its ledger cannot poll")
	}
	// The poll pins one generation of the config for its whole session:
	// a reload meanwhile does not close the plugins it uses.
	g := e.gens.pin()
	defer g.unpin()
	ic := g.setup.Config.Input(name)
	if ic == nil {
		return Stats{}, fmt.Errorf("no input %q", name)
	}
	start := time.Now()
	p := &poll{e: e, s: g.setup, ic: ic, log: e.Log.With("input", name)}
	if wait := e.outputsDown(g.setup, ic); wait > 0 {
		// Fetching now would only download mail to leave it where it is.
		p.log.Info("every output of the pipeline is backing off; not polling until one can be tried again", "retry_in", wait.Round(time.Second))
		e.observer.PollDone(PollEvent{Input: name, Took: time.Since(start)})
		return p.stats, nil
	}
	err := p.run(ctx)
	e.observer.PollDone(PollEvent{Input: name, Err: err, Stats: p.stats, Took: time.Since(start)})
	if err != nil {
		return p.stats, fmt.Errorf("input %q: %w", name, err)
	}
	return p.stats, nil
}

// outputsDown returns how long until one of the outputs the input's
// pipeline sends to by default may be tried again, or 0 when one may be
// tried now (or the pipeline has none, and its scripts route).
func (e *Engine) outputsDown(s *Setup, ic *config.Input) time.Duration {
	p := s.pipelines[ic.Pipeline]
	if p == nil || len(p.outputs) == 0 {
		return 0
	}
	var soonest time.Duration
	for i, name := range p.outputs {
		w := e.backoff.wait(name)
		if w <= 0 {
			return 0
		}
		if i == 0 || w < soonest {
			soonest = w
		}
	}
	return soonest
}

func (e *Engine) inputLock(name string) *sync.Mutex {
	e.pollMu.Lock()
	defer e.pollMu.Unlock()
	mu := e.polling[name]
	if mu == nil {
		mu = &sync.Mutex{}
		e.polling[name] = mu
	}
	return mu
}

// poll is one session of one input.
type poll struct {
	e   *Engine
	s   *Setup
	ic  *config.Input
	log *slog.Logger

	// byContent is set when ids cannot be trusted on their own this poll
	// (an unstable scheme, or a scheme that changed since the last poll):
	// every message is fetched and matched to records by its digest.
	byContent bool
	records   map[string]ledger.Record // by id, of the listed ids
	// delivered counts, per output, the listed messages the ledger has as
	// accepted there, by folder and identity (for Delivery.Siblings).
	delivered map[string]map[string]int
	all       map[string]ledger.Record // every record of the input (byContent only)
	byDigest  map[string]string        // settled records' digest → id (byContent only)

	// changes are settled messages whose flags changed at the source since
	// they were delivered (see mirror.go); baseline are settled records
	// that do not know their flags yet, to be told them.
	changes  []change
	baseline map[string]ledger.Record
	// unfinished counts messages listed and not dealt with for good in
	// ways Stats does not count (over max_message_size, a change not
	// carried): a delta checkpoint is kept only when there are none.
	unfinished int

	// answer is the session, when its source waits for each message's
	// fate (answer.go).
	answer plugin.Answerer

	mu     sync.Mutex
	stats  Stats
	commit []plugin.Item
}

func (p *poll) run(ctx context.Context) error {
	var sess plugin.Session
	var delta plugin.Delta
	a := p.e.takeAhead(p.ic, false)
	if a != nil {
		sess, delta = a.sess, a.delta
	}
	if a == nil || !a.listed {
		var err error
		if sess == nil {
			if sess, err = p.ic.Plugin.Open(ctx); err != nil {
				return err
			}
		}
		if delta, err = p.list(ctx, sess); err != nil {
			return errors.Join(err, sess.Close(ctx))
		}
	}
	listing := delta.Listing
	fetch, err := p.plan(ctx, sess, listing)
	if err != nil {
		return errors.Join(err, sess.Close(ctx))
	}
	p.answer, _ = sess.(plugin.Answerer)

	// When ctx is cancelled (a shutdown) no more is fetched; a message
	// already fetched is filtered, and released to its source unless an
	// output has it already (see settle); what settled is recorded and
	// committed all the same.
	work := context.WithoutCancel(ctx)
	in := &intake{p: p, ctx: ctx}
	// Flag changes go to the outputs while the new messages come: one
	// after the other, a changed pass waited for both in turn.
	named := p.nameChanges(ctx, sess)
	mirrored := make(chan struct{})
	go func() {
		defer close(mirrored)
		p.mirrorFlags(ctx, named)
	}()
	fetchErr := sess.Fetch(ctx, fetch, in.take)
	in.wait()
	<-mirrored

	// The settled records go to disk, in one commit, before the source is
	// told to delete anything.
	var commitErr error
	if err := p.e.Ledger.Flush(); err != nil {
		p.log.Error("ledger: could not write the settled records; nothing is committed at the source this time", "err", err)
		commitErr, p.commit = fmt.Errorf("ledger: %w", err), nil
	}
	if len(p.commit) > 0 {
		closeCtx, cancel := context.WithTimeout(work, 2*time.Minute)
		failed, err := sess.Commit(closeCtx, p.commit)
		cancel()
		for _, it := range failed {
			p.log.Warn("source did not commit a settled message; it is committed on the next poll", "id", it.ID)
		}
		commitErr = err
		if !listing.Keeps && err == nil && p.mirrorsDeletes() {
			// Gone from the next listing because mailflow took them: not
			// a deletion for an output to mirror.
			p.markRemoved(failed)
		}
	}
	var closeErr error
	if !p.e.keepAfterPoll(p.ic, sess, fetchErr == nil && commitErr == nil && ctx.Err() == nil) {
		closeCtx, cancel := context.WithTimeout(work, 2*time.Minute)
		defer cancel()
		closeErr = sess.Close(closeCtx)
	}

	p.forgetGone(work, delta)
	p.keepMeta(delta, fetchErr == nil && commitErr == nil && closeErr == nil)
	return errors.Join(fetchErr, commitErr, closeErr)
}

// list lists the source: what changed since the last checkpoint, where
// the session can tell (plugin.DeltaSession), else everything.
func (p *poll) list(ctx context.Context, sess plugin.Session) (plugin.Delta, error) {
	if ds, ok := sess.(plugin.DeltaSession); ok {
		return ds.ListSince(ctx, p.e.Ledger.Meta(p.ic.Name).Checkpoint)
	}
	l, err := sess.List(ctx)
	return plugin.Delta{Listing: l}, err
}

// forgetGone forgets the records of messages that left the source, once a
// listing says so: every record not listed after a full listing, and
// after a partial one those in the places it listed whole. A message
// someone deleted at a source that keeps what mailflow settles is first
// deleted at the outputs that mirror deletions.
func (p *poll) forgetGone(ctx context.Context, d plugin.Delta) {
	name := p.ic.Name
	var places []string
	if d.Partial {
		if places = d.Complete; len(places) == 0 {
			return
		}
	}
	present := make(map[string]bool, len(d.Items))
	for _, it := range d.Items {
		present[it.ID] = true
	}
	gone, recs, err := p.e.Ledger.Stale(name, places, present)
	// When the ids of this listing are not those of the records
	// (byContent), an old id not listed is no sign of a deletion: it may be
	// a message listed under a new id, whose record it took over, or one
	// not fetched this poll. Nothing is deleted at an output on the word of
	// such a listing.
	if err == nil && d.Keeps && !p.byContent {
		gone = p.mirrorDeletes(ctx, gone, recs)
	}
	if err == nil {
		err = p.e.Ledger.Forget(name, gone)
	}
	if err != nil {
		p.log.Warn("ledger: could not forget messages that left the source", "err", err)
	} else if len(gone) > 0 {
		p.log.Debug("forgot the records of messages that left the source", "count", len(gone))
	}
}

// keepMeta records how the source made its ids, and where a delta listing
// stands once every message it listed was dealt with (ok: the poll had no
// error), so that a message left for later is listed again.
func (p *poll) keepMeta(d plugin.Delta, ok bool) {
	name := p.ic.Name
	meta := p.e.Ledger.Meta(name)
	changed := false
	// An empty listing says nothing of how the source makes its ids (a
	// POP3 server without UIDL reports its default scheme for an empty
	// mailbox): the scheme of the last listing with messages stays.
	if scheme := d.Scheme; len(d.Items) > 0 || meta.Scheme == "" {
		changed = meta.Scheme != scheme
		meta.Scheme = scheme
	}
	p.mu.Lock()
	done := ok && p.stats.Deferred == 0 && p.stats.Left == 0 && p.unfinished == 0
	p.mu.Unlock()
	if done && d.Checkpoint != nil && !bytes.Equal(d.Checkpoint, meta.Checkpoint) {
		meta.Checkpoint, changed = d.Checkpoint, true
	}
	// LastListed is only shown (mailflow ledger), so an unchanged input
	// writes it every ten minutes, not at every poll: a commit with its
	// syncs per poll of a thousand mailboxes.
	if changed || time.Since(meta.LastListed) > 10*time.Minute {
		meta.LastListed = time.Now().UTC()
		if err := p.e.Ledger.SetMeta(name, meta); err != nil {
			p.log.Warn("ledger: could not record the id scheme", "err", err)
		}
	}
}

// markRemoved records that the committed messages, but failed, were told
// to leave the source.
func (p *poll) markRemoved(failed []plugin.Item) {
	skip := make(map[string]bool, len(failed))
	for _, it := range failed {
		skip[it.ID] = true
	}
	var ids []string
	for _, it := range p.commit {
		if !skip[it.ID] {
			ids = append(ids, it.ID)
		}
	}
	if err := p.e.Ledger.MarkRemoved(p.ic.Name, ids); err != nil {
		p.log.Warn("ledger: could not record that messages were removed at the source", "err", err)
	}
}

// spoolFirst is what is read into memory of a message spooled to disk
// because the memory budget is spent: enough for its header to be parsed
// without a second read.
const spoolFirst = 64 << 10

// spool is how this input's messages are read in: the global options with
// the input's own max_message_size, if it has one.
func (p *poll) spool() message.SpoolOptions {
	o := p.s.Config.Spool
	if p.ic.MaxMessageSize > 0 {
		o.MaxSize = p.ic.MaxMessageSize
	}
	return o
}

// done counts one message's outcome in the poll's stats and tells the
// observer: the one place both learn it, so that they agree.
func (p *poll) done(ev MessageEvent) {
	ev.Input = p.ic.Name
	p.mu.Lock()
	p.stats.count(ev.Outcome)
	if ev.InDoubt {
		p.stats.InDoubt++
	}
	p.mu.Unlock()
	p.e.observer.MessageDone(ev)
}

// fetched counts a message read from the source.
func (p *poll) fetched(it plugin.Item, bytes int64) {
	p.mu.Lock()
	p.stats.Fetched++
	p.mu.Unlock()
	p.e.observer.MessageFetched(p.ic.Name, it.Folder, bytes)
}

func (p *poll) toCommit(it plugin.Item) {
	p.mu.Lock()
	p.commit = append(p.commit, it)
	p.mu.Unlock()
}

// itemIDs are the ids of items.
func itemIDs(items []plugin.Item) []string {
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.ID
	}
	return ids
}

// listingIDs are the ids of a listing's items.
func listingIDs(l plugin.Listing) []string { return itemIDs(l.Items) }

// wholeAt are the outputs that accepted the whole message of rec.
func wholeAt(rec ledger.Record) []string {
	var out []string
	for name, who := range rec.Accepted {
		if slices.Contains(who, "*") {
			out = append(out, name)
		}
	}
	return out
}

// planChunk is how many records plan decodes at a time. It keeps the
// records of the messages it fetches, not those of every listed one: a
// decoded record costs about a kilobyte, and a run again over a migrated
// mailbox of 10,000 messages held 10 MB of them for nothing.
const planChunk = 512

// decision is what plan decided for one listed message.
type decision uint8

const (
	leave    decision = iota // held: a person has to look at it
	tooLarge                 // over max_message_size: it stays at the source
	skip                     // settled earlier: committed only
	carry                    // settled earlier, its flags changed: committed, the change carried (mirror.go)
	fetchIt                  // fetched and taken through its pipeline (handle)
)

// plan decides, for each listed message, from its record: commit only
// (settled earlier, and the listing shows the same message), leave it
// (over the size bound, or held), or fetch it. p.records keeps the records
// of those it fetches. It also counts, per output, the listed messages an
// output accepted whole (p.delivered, for Delivery.Siblings), asking a
// session that names its messages only on request (plugin.Identifier) to
// name those first.
func (p *poll) plan(ctx context.Context, sess plugin.Session, listing plugin.Listing) ([]plugin.Item, error) {
	name := p.ic.Name
	meta := p.e.Ledger.Meta(name)
	p.byContent = !listing.Stable
	if meta.Scheme != "" && meta.Scheme != listing.Scheme && len(listing.Items) > 0 {
		p.log.Warn("the source identifies its messages differently than on the last poll; matching them to the ledger by their content this time (every message is fetched, none is delivered twice)",
			"was", meta.Scheme, "now", listing.Scheme)
		p.byContent = true
	}
	if p.byContent {
		p.byDigest = map[string]string{}
		p.all = p.e.Ledger.All(name)
		for id, rec := range p.all {
			if rec.Settled != "" && rec.Digest != "" {
				p.byDigest[rec.Digest] = id
			}
		}
	}
	items := listing.Items
	p.records = map[string]ledger.Record{}
	p.delivered = map[string]map[string]int{}
	count := func(outputs []string, it plugin.Item) {
		for _, out := range outputs {
			if p.delivered[out] == nil {
				p.delivered[out] = map[string]int{}
			}
			p.delivered[out][it.Folder+"\x00"+it.Identity]++
		}
	}
	identifier, _ := sess.(plugin.Identifier)
	var need []int        // listed messages accepted whole, to be named
	var needAt [][]string // and the outputs that accepted each
	decided := make([]decision, len(items))
	changed := map[int]ledger.Record{}
	max := p.spool().MaxSize
	for from := 0; from < len(items); from += planChunk {
		chunk := items[from:min(from+planChunk, len(items))]
		recs := p.e.Ledger.GetMany(name, itemIDs(chunk))
		for j, it := range chunk {
			i := from + j
			rec, known := recs[it.ID]
			// Settled or not: an output that accepted the whole message (a
			// kill can come between its answer and the settle) holds its copy.
			if outputs := wholeAt(rec); len(outputs) > 0 {
				switch {
				case it.Identity != "":
					count(outputs, it)
				case identifier != nil:
					need, needAt = append(need, i), append(needAt, outputs)
				}
			}
			decided[i] = p.decide(it, rec, known, listing, max)
			switch decided[i] {
			case fetchIt:
				if known {
					p.records[it.ID] = rec
				}
			case carry:
				changed[i] = rec
			case skip:
				if rec.Settled == ledger.Delivered && rec.Flags == nil && it.Flags != nil {
					// Settled before flags were kept: from now on they are.
					rec.Flags = it.Flags
					if p.baseline == nil {
						p.baseline = map[string]ledger.Record{}
					}
					p.baseline[it.ID] = rec
				}
			}
		}
	}
	if len(need) > 0 {
		some := make([]plugin.Item, len(need))
		for j, i := range need {
			some[j] = items[i]
		}
		if err := identifier.Identify(ctx, some); err != nil {
			return nil, err
		}
		for j, i := range need {
			items[i].Identity = some[j].Identity
			if items[i].Identity != "" {
				count(needAt[j], items[i])
			}
		}
	}
	counts := [fetchIt + 1]int{}
	for _, d := range decided {
		counts[d]++
	}
	// What is committed is known but for the fetched messages that will
	// settle: room for them all at once, not copies as the list grows.
	p.commit = make([]plugin.Item, 0, counts[skip]+counts[carry]+counts[fetchIt])
	if counts[fetchIt] == len(items) {
		// Every message is fetched (a first import): the listing is the
		// list, without a copy of it (Session.Fetch does not change it).
		return items, nil
	}
	fetch := make([]plugin.Item, 0, counts[fetchIt])
	for i, it := range items {
		switch decided[i] {
		case tooLarge:
			p.log.Warn("message is over max_message_size; it stays at the source", "id", it.ID, "size", it.Size, "max", max)
			p.unfinished++
		case carry:
			// Its flags are carried to the outputs after the fetch
			// (mirror.go), and it counts as updated, not skipped.
			p.changes = append(p.changes, change{it: it, rec: changed[i]})
			p.toCommit(it)
		case skip:
			p.done(MessageEvent{Folder: it.Folder, Outcome: Skipped})
			p.toCommit(it)
		case fetchIt:
			fetch = append(fetch, it)
		}
	}
	return fetch, nil
}

// decide is plan's decision for one listed message, from its record (if
// known), under the size bound max.
func (p *poll) decide(it plugin.Item, rec ledger.Record, known bool, listing plugin.Listing, max int64) decision {
	sameSize := known && rec.Listed > 0 && rec.Listed == it.Size
	// A held record always has the size it was held at, 0 included (an
	// empty file); another record's 0 may be one made before sizes were
	// kept.
	heldSize := known && rec.Settled == ledger.Held && rec.Listed == it.Size
	switch {
	case heldSize || known && rec.Settled == ledger.Held && !listing.Stable:
		// A person has to look at it (see the quarantine); fetching
		// it again would give the same wrong bytes.
		return leave
	case max > 0 && it.Size > max:
		return tooLarge
	case known && rec.Settled != "" && sameSize && !p.byContent && (listing.Keeps || listing.Unique):
		if rec.Settled == ledger.Delivered && flagsChanged(rec, it) {
			return carry
		}
		return skip
	}
	return fetchIt
}

// handle settles one fetched message: a message the ledger has as settled
// under this id (or, matching by content, under another) is only
// committed; any other goes through its pipeline.
func (p *poll) handle(ctx context.Context, it plugin.Item, msg *message.Message) {
	name := p.ic.Name
	digest := hex.EncodeToString(msg.Digest[:])
	rec, known := p.records[it.ID]
	if known && rec.Digest != "" && rec.Digest != digest {
		// Sources promise never to reuse an id (RFC 1939 for UIDL, the
		// Maildir spec for names), but if one does, the record is about
		// another message: committing this one on it would lose it.
		p.log.Warn("source id reused for a different message; treating it as new", "id", it.ID, "message_id", msg.MessageID(), "earlier", string(rec.Settled))
		rec, known = ledger.Record{}, false
	}
	if p.byContent && (!known || rec.Settled == "") {
		// Matched by content to a record under another id: as that record
		// was when the poll began, so that two messages whose ids were
		// swapped each find their own.
		p.mu.Lock()
		other, ok := p.byDigest[digest]
		if ok {
			delete(p.byDigest, digest) // one record settles one message
		}
		p.mu.Unlock()
		if ok {
			rec, known = p.all[other], true
			rec.Listed = it.Size
			if err := p.e.Ledger.Put(name, it.ID, rec); err != nil {
				p.log.Warn("ledger: could not record the message under its new id", "id", it.ID, "err", err)
			}
		}
	}
	if known && rec.Settled != "" {
		p.done(MessageEvent{Folder: it.Folder, Outcome: Skipped, Bytes: msg.OriginalSize()})
		p.log.Debug("settled on an earlier poll; committing only", "id", it.ID, "earlier", string(rec.Settled))
		p.toCommit(it)
		return
	}
	// The flags are the source's, as the outputs are given them: a later
	// change there is found against them (mirror.go).
	rec.Digest, rec.Size, rec.Listed, rec.Attempts, rec.Flags = digest, msg.OriginalSize(), it.Size, 0, it.Flags
	identity := it.Identity
	if identity == "" {
		// Named from what was fetched, before any filter edits it, as the
		// source would name it.
		identity = message.Identity(&msg.Header, msg.OriginalSize())
	}
	start := time.Now()
	res := p.e.settle(ctx, p.s, p.ic.Pipeline, msg, rec, ledgerRecorder{p.e.Ledger, name, it.ID, p.delivered, it.Folder + "\x00" + identity, p.answer, it})
	if p.answer != nil && !res.rejected {
		p.answer.Answer(it, answerOf(res))
	}
	p.done(MessageEvent{Folder: it.Folder, Outcome: res.outcome, Bytes: msg.OriginalSize(), Took: time.Since(start), InDoubt: res.inDoubt})
	if res.state == stateSettled {
		p.toCommit(it)
	}
}

// mismatch handles a message whose fetched size does not agree with what
// the source announced: a truncated transfer, a server that did not
// byte-stuff a leading dot. It is neither delivered nor committed; after
// config.FetchAttempts such fetches its bytes go to the quarantine for a
// person to look at and the source keeps it. why, from the session's
// reader, says the bytes would be the same however often they were
// fetched: the message is held at once.
func (p *poll) mismatch(it plugin.Item, msg *message.Message, why error) {
	name := p.ic.Name
	deferred := MessageEvent{Folder: it.Folder, Outcome: Deferred, Bytes: msg.OriginalSize()}
	rec := p.records[it.ID]
	if rec.Settled != "" {
		// Fetched to check a settled message before committing it: a short
		// read proves nothing about it. Neither commit nor touch the record.
		p.log.Warn("fetched message does not have the size the source announced; not committed, checked again next poll",
			"id", it.ID, "announced", it.Size, "fetched", msg.OriginalSize())
		p.done(deferred)
		return
	}
	rec.Attempts++
	rec.Listed, rec.Size, rec.Digest = it.Size, msg.OriginalSize(), hex.EncodeToString(msg.Digest[:])
	attempts := p.s.Config.FetchAttempts
	log := p.log.With("id", it.ID, "announced", it.Size, "fetched", msg.OriginalSize(), "attempt", rec.Attempts, "of", attempts)
	if rec.Attempts < attempts && why == nil {
		log.Warn("fetched message does not have the size the source announced; not delivered, not committed, tried again next poll")
		if err := p.e.Ledger.Put(name, it.ID, rec); err != nil {
			log.Warn("ledger", "err", err)
		}
		p.done(deferred)
		return
	}
	reason := fmt.Sprintf("fetched %d bytes where the source announced %d, %d times; the source keeps the message", msg.OriginalSize(), it.Size, rec.Attempts)
	if why != nil {
		reason = fmt.Sprintf("fetched %d bytes where the source announced %d (%v); the source keeps the message", msg.OriginalSize(), it.Size, why)
		log = log.With("why", why)
	}
	entry, err := p.e.Quarantine.Put(msg, quarantine.Entry{Pipeline: p.ic.Pipeline, Reason: reason, Held: true})
	if err != nil {
		log.Error("quarantine", "err", err)
		p.done(deferred)
		return
	}
	rec.Settled = ledger.Held
	if err := p.e.Ledger.Put(name, it.ID, rec); err != nil {
		log.Warn("ledger", "err", err)
	}
	log.Error("held: the fetched copy is in the quarantine and the source keeps the message; it is not fetched again while the source lists it the same way", "quarantine_id", entry.ID)
	p.done(MessageEvent{Folder: it.Folder, Outcome: Held, Bytes: msg.OriginalSize()})
}

// SizeAgrees reports whether msg's size is what the source announced, up
// to line-end conversion: a source may count its lines with CRLF and hand
// over LF, or the other way round. A server may also end a message that
// has no final line end with one it adds (Dovecot's POP3 does), so two
// bytes more ending in CRLF agree too. A negative announced size is
// unknown.
func SizeAgrees(announced int64, msg *message.Message) bool {
	got := msg.OriginalSize()
	if announced < 0 || got == announced {
		return true
	}
	crlf, bareLF := msg.LineEnds()
	if got-crlf == announced || got+bareLF == announced {
		return true
	}
	return got == announced+2 && msg.EndsInCRLF()
}

// ledgerRecorder records one polled message's delivery in the ledger.
type ledgerRecorder struct {
	l         *ledger.Ledger
	input     string
	id        string
	delivered map[string]map[string]int // see poll.delivered
	kin       string                    // the message's folder and identity
	answer    plugin.Answerer           // the session, if its source waits (answer.go)
	it        plugin.Item
}

func (r ledgerRecorder) siblings(output string) int { return r.delivered[output][r.kin] }

func (r ledgerRecorder) note(rec ledger.Record) error { return r.l.Note(r.input, r.id, rec) }

// put records a settled delivery for the group commit (Ledger.Settle: on
// disk before the source commits), anything else at once.
func (r ledgerRecorder) put(rec ledger.Record) error {
	if rec.Settled != "" {
		return r.l.Settle(r.input, r.id, rec)
	}
	return r.l.Put(r.input, r.id, rec)
}
