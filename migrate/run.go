package migrate

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/migrate/survey"
	"github.com/mailflow/mailflow/plugins"
)

// Options are how a run is watched.
type Options struct {
	Log      *slog.Logger // the engine's log; nil: discarded
	Observer Observer     // nil: none
}

// Run carries out the plan: it surveys the source (what is to move, what
// an earlier run moved), polls it once through the engine, which moves
// each message and records it so that an interrupted run resumes, checks
// the destination folder by folder where it can be searched, and, when
// the plan says so and nothing is missing, empties the source. The report
// says what it did; its Errors say what stays to be done, by class.
func Run(ctx context.Context, p Plan, o Options) *Report {
	r := &Report{Started: time.Now().UTC()}
	defer func() { r.Seconds = time.Since(r.Started).Seconds() }()
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	from, to, err := p.check()
	if err != nil {
		r.fail(ClassPlan, err)
		return r
	}
	if p.Config == "" {
		r.From, r.To = p.From.Redacted(), p.To.Redacted()
	}
	state, err := p.stateDir()
	if err != nil {
		r.fail(ClassPlan, err)
		return r
	}
	cfg, err := p.buildConfig(from, to, state, false)
	if err != nil {
		r.fail(ClassPlan, err)
		return r
	}
	r.StateDir = cfg.StateDir
	if p.Config == "" {
		if err := p.save(state); err != nil {
			r.fail(ClassPlan, err)
			return r
		}
		// After the save: the login reads the plan from the state.
		if err := checkLogin(cfg, state); err != nil {
			r.fail(ClassPlan, err)
			return r
		}
	}
	meter := newMeter(o.Observer)
	// The verification takes the poll's source session rather than log
	// in again.
	e, err := engine.Open(cfg, plugins.Default, o.Log, engine.WithObserver(meter), engine.WithSessionsReused())
	if err != nil {
		r.fail(ClassPlan, err)
		return r
	}
	defer e.Close()

	// What the next poll will deal with: what changed since the last one,
	// where the source can tell. What an earlier run moved, and is still
	// at the source, is what the ledger has as settled.
	settledBefore := settled(e)
	phase := time.Now() // where a run's time goes, in the debug log
	// The destination logs in while the source is surveyed: a run always
	// needs it (to deliver, or to verify), and on a pass that finds
	// little to do the logins are much of its time.
	for _, oc := range cfg.Outputs {
		if w, ok := oc.Plugin.(plugin.Warmer); ok {
			w.Warm(ctx)
		}
	}
	var toMove places
	surveyed := map[string][]plugin.Folder{} // by input, for the verification
	for _, ic := range cfg.Inputs {
		items, folders, err := survey.Changes(ctx, e, ic.Name, survey.PeekNone)
		if err != nil {
			r.fail(ClassConnection, fmt.Errorf("%s: %w", ic.Name, err))
			return r
		}
		surveyed[ic.Name] = folders
		r.Surveyed.add(items)
		for _, it := range items {
			if !it.Settled && !it.TooLarge {
				toMove.add(it.Folder, it.FolderRole, it.Size)
			}
		}
	}
	r.Surveyed.MovedEarlier.Messages = max(r.Surveyed.MovedEarlier.Messages, settledBefore)
	r.TooLarge = r.Surveyed.TooLarge.Messages

	// The folders mail is to go to are made first: a folder the
	// destination refuses is a mistake of the plan, said now, and an IMAP
	// source leaves it out of this run rather than fetch its messages to
	// leave them where they are.
	totals := r.Surveyed
	if refused := makeFolders(ctx, cfg, toMove); len(refused) > 0 {
		r.RefusedFolders = refused
		totals = totals.without(refused)
		if skip, ok := skippable(from, refused); ok && p.Config == "" {
			next, err := p.buildConfig(from, to, state, false, skip...)
			if err == nil {
				err = e.Apply(next)
			}
			if err != nil {
				r.fail(ClassPlan, err)
				return r
			}
			cfg = next
		}
	}
	meter.begin(totals)
	o.Log.Debug("surveyed the source, made the folders", "took", time.Since(phase))
	phase = time.Now()

	total, runErr := passes(ctx, e, cfg, meter)
	o.Log.Debug("moved", "took", time.Since(phase))
	phase = time.Now()
	moved := meter.movedCount()
	// An output that found a message there already (IMAP skip_existing)
	// accepted it without a copy: it counts as already there, not moved.
	r.AlreadyThere = alreadyThere(cfg)
	r.Moved, r.MovedBytes = total.Delivered-r.AlreadyThere, moved.Bytes
	r.AlreadyMoved, r.FlagsUpdated, r.DeletedThere = settledBefore, total.Updated, total.Deleted
	r.Left, r.Deferred, r.Held, r.InDoubt = total.Left, total.Deferred, total.Held, total.InDoubt
	// Messages whose folder was refused during the poll stay at the
	// source as deferred ones do, but a retry cannot help them.
	for _, f := range meter.refusedFolders() {
		r.Deferred -= f.Messages
		if !slices.ContainsFunc(r.RefusedFolders, func(g RefusedFolder) bool { return g.Folder == f.Folder }) {
			r.RefusedFolders = append(r.RefusedFolders, f)
		}
	}
	r.Deferred = max(r.Deferred, 0)
	for _, f := range r.RefusedFolders {
		r.fail(ClassPlan, fmt.Errorf("the destination refused the folder %q (%s); its %d messages stay on the old server: "+
			"give it a name the destination takes with --folder-map '%s=NAME' (or have its administrator allow the folder) and run again",
			f.Folder, f.Reason, f.Messages, f.Folder))
	}
	if entries, err := e.Quarantine.List(); err == nil {
		for _, q := range entries {
			if !q.At.Before(r.Started) {
				r.Refused = append(r.Refused, Refusal{SourceID: q.SourceID, MessageID: q.MessageID, Reason: q.Reason, QuarantineID: q.ID})
			}
		}
	}
	switch {
	case ctx.Err() != nil:
		r.fail(ClassInterrupted, fmt.Errorf("interrupted: run the same command again to go on where it stopped"))
	case runErr != nil:
		r.fail(ClassConnection, runErr)
	case total.Deferred > 0:
		r.fail(ClassIncomplete, fmt.Errorf("%d messages are still on the old server; run again to retry", total.Deferred))
	}
	if r.TooLarge > 0 {
		r.fail(ClassIncomplete, fmt.Errorf("%d messages are larger than max_message_size and stay on the old server", r.TooLarge))
	}
	r.verify(ctx, e, cfg, state, surveyed)
	o.Log.Debug("verified", "took", time.Since(phase))
	if p.DeleteSource {
		r.deleteSource(ctx, e, &p, from, to, state)
	}
	return r
}

// maxPasses bounds how often a run polls again after a server asked it
// to wait: a server that throttles for ever ends the run (resumable) in
// about that many of its waits.
const maxPasses = 100

// passes polls every input, and again after each wait a server asked for
// while messages stay to be moved, until a pass needs no wait, the
// messages left are none, or ctx ends. The counts are those of every
// pass, but Deferred, which is what the last pass left.
func passes(ctx context.Context, e *engine.Engine, cfg *config.Config, meter *Meter) (engine.Stats, error) {
	var total engine.Stats
	for pass := 1; ; pass++ {
		meter.newPass()
		stats, err := e.RunOnce(ctx)
		var this engine.Stats
		for _, s := range stats {
			this.Add(s)
		}
		deferred := this.Deferred
		this.Deferred = 0
		total.Add(this)
		total.Deferred = deferred
		asked, why := meter.takeThrottle()
		if asked == 0 || deferred == 0 && err == nil || ctx.Err() != nil || pass >= maxPasses {
			return total, err
		}
		// The back-off of an output may outlast what its server asked
		// for (failures before): wait for the longer.
		for _, oc := range cfg.Outputs {
			asked = max(asked, e.OutputWait(oc.Name))
		}
		meter.wait(ctx, why, asked)
	}
}

// place is a folder, with its SPECIAL-USE role, that mail is to go to.
type place struct{ folder, role string }

// places are the places mail is to go to, in the order first seen, with
// what goes to each: the survey's messages are counted as they come,
// rather than kept (a copy of the listing, for a folder name and a size).
type places struct {
	order []place
	count map[place]Count
}

func (ps *places) add(folder, role string, size int64) {
	pl := place{folder, role}
	if ps.count == nil {
		ps.count = map[place]Count{}
	}
	if _, seen := ps.count[pl]; !seen {
		ps.order = append(ps.order, pl)
	}
	ps.count[pl] = ps.count[pl].plus(1, size)
}

// makeFolders makes, at every output that makes places (plugin.PlaceMaker),
// the folders of to, and returns those the destination refused, with the
// messages that stay at the source for them. Any other error is left for
// the poll to meet.
func makeFolders(ctx context.Context, cfg *config.Config, to places) []RefusedFolder {
	order, count := to.order, to.count
	refused := map[string]*RefusedFolder{}
	var out []RefusedFolder
	for _, ic := range cfg.Inputs {
		pc := cfg.Pipeline(ic.Pipeline)
		if pc == nil {
			continue
		}
		for _, name := range pc.Outputs {
			pm, ok := cfg.Output(name).Plugin.(plugin.PlaceMaker)
			if !ok {
				continue
			}
			for _, pl := range order {
				if refused[pl.folder] != nil {
					continue
				}
				if rp, ok := plugin.PlaceRefused(pm.MakePlace(ctx, pl.folder, pl.role)); ok {
					c := count[pl]
					refused[pl.folder] = &RefusedFolder{Folder: pl.folder, Reason: rp.Error(), Messages: c.Messages, Bytes: c.Bytes}
				}
			}
		}
	}
	for _, pl := range order {
		if f := refused[pl.folder]; f != nil {
			out = append(out, *f)
			delete(refused, pl.folder)
		}
	}
	return out
}

// skippable returns the LIST patterns that leave the refused folders out of
// an IMAP source; not ok when the source is of another kind, or a name
// holds a wildcard, which a pattern cannot name alone.
func skippable(from endpoint, refused []RefusedFolder) ([]string, bool) {
	if from.scheme != "imap" {
		return nil, false
	}
	var skip []string
	for _, f := range refused {
		if f.Folder == "" || strings.ContainsAny(f.Folder, "*%") {
			return nil, false
		}
		skip = append(skip, f.Folder)
	}
	return skip, true
}

// verify compares, folder by folder, what each input's source holds with
// what each of its outputs that can say what it holds (IMAP) has, flags
// included. A folder that changed on neither side since the last
// verification found it clean is passed over (its tokens are kept in the
// state directory). surveyed are the folders each input's survey listed
// with their states, where it could: when they show no change at the
// source, the verification opens no session there.
func (r *Report) verify(ctx context.Context, e *engine.Engine, cfg *config.Config, state string, surveyed map[string][]plugin.Folder) {
	known := loadTokens(state)
	for _, ic := range cfg.Inputs {
		pc := cfg.Pipeline(ic.Pipeline)
		if pc == nil {
			continue
		}
		for _, out := range pc.Outputs {
			if _, ok := cfg.Output(out).Plugin.(plugin.Finder); !ok {
				r.Unverified = append(r.Unverified, Unverified{Input: ic.Name, Output: out, Why: unverifiable(cfg.Output(out).Type)})
				continue
			}
			pair := ic.Name + " → " + out
			v := Verification{Input: ic.Name, Output: out}
			checks, clean, err := survey.VerifySurveyed(ctx, e, ic.Name, out, known[pair], surveyed[ic.Name])
			if err != nil {
				v.Error = err.Error()
				r.fail(ClassConnection, fmt.Errorf("verification of %s: %w", pair, err))
			}
			for _, c := range checks {
				v.Missing += len(c.Missing)
				v.FlagsDiffer += len(c.FlagsDiffer)
			}
			v.Folders = checks
			if v.Missing > 0 {
				r.fail(ClassIncomplete, fmt.Errorf("verification of %s: %d messages missing at the destination", pair, v.Missing))
			}
			if v.FlagsDiffer > 0 {
				r.fail(ClassIncomplete, fmt.Errorf("verification of %s: %d messages have other flags at the destination than at the source (changed there?)", pair, v.FlagsDiffer))
			}
			r.Verifications = append(r.Verifications, v)
			known[pair] = clean
		}
	}
	if state != "" {
		saveTokens(state, known)
	}
}

// unverifiable says why an output of type typ is not compared with the
// source after a run.
func unverifiable(typ string) string {
	switch typ {
	case "gmail":
		return "this output does not read Gmail back (it imports only); each message counts as moved once Gmail answered its import with the new message's id, which the record keeps (gmail:ID)"
	case "smtp":
		return "an SMTP server cannot be asked what it holds; each message counts as moved once the server accepted it"
	}
	return "this destination cannot say what it holds"
}

// settled is how many messages the ledger has as settled, over every
// input: moved by earlier runs and still at their source.
func settled(e *engine.Engine) int64 {
	var n int64
	for _, st := range e.Ledger.Stats() {
		n += int64(st.Settled)
	}
	return n
}

// deleteSource empties the IMAP source of what was moved and verified:
// the source is set to delete what is settled and polled once more. Every
// message the ledger has as settled is deleted on its id (an IMAP UID is
// never reused); one that arrived meanwhile is moved first.
func (r *Report) deleteSource(ctx context.Context, e *engine.Engine, p *Plan, from, to endpoint, state string) {
	if len(r.Errors) > 0 {
		r.fail(ClassIncomplete, fmt.Errorf("--delete-source: the source is left as it is, since not everything was verified at the destination"))
		return
	}
	cfg, err := p.buildConfig(from, to, state, true)
	if err == nil {
		err = e.Apply(cfg)
	}
	if err != nil {
		r.fail(ClassPlan, fmt.Errorf("--delete-source: %w", err))
		return
	}
	stats, err := e.RunOnce(ctx)
	var total engine.Stats
	for _, s := range stats {
		total.Add(s)
	}
	r.SourceDeleted, r.SourceMovedFirst = total.Skipped+total.Delivered, total.Delivered
	switch {
	case err != nil:
		r.fail(ClassConnection, fmt.Errorf("--delete-source: %w (run the same command again to finish)", err))
	case total.Deferred > 0:
		r.fail(ClassIncomplete, fmt.Errorf("--delete-source: %d messages could not be moved or deleted (run the same command again to finish)", total.Deferred))
	}
}

// alreadyThere sums, over the outputs that count them, the messages that
// were found at the destination and not copied again.
func alreadyThere(cfg *config.Config) int64 {
	var n int64
	for _, oc := range cfg.Outputs {
		if c, ok := oc.Plugin.(interface{ AlreadyThere() int64 }); ok {
			n += c.AlreadyThere()
		}
	}
	return n
}
