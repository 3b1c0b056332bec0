package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// The IMAP bench's delta passes (go run ./bench -imap -delta). For each
// tool, in turn, each round:
//
//  1. the source is seeded afresh (with the keyword deltaKeyword on every
//     tenth message) and the destination and the tool's state emptied;
//  2. a first, full copy;
//  3. a pass over the unchanged source (timed: what a tool spends to find
//     that there is nothing to do);
//  4. a change at the source, over IMAP: \Flagged added to 100 messages,
//     deltaKeyword removed from 20, 50 new messages;
//  5. the next pass, timed.
//
// After each step the destination is compared with the source message by
// message (Message-ID and flags, per folder): how many of the 120 flag
// changes and the 50 new messages the tool carried, and what else differs.
// mbsync keeps its SyncState and mailflow its --state between the passes;
// imapsync has none. The limit tool has no record of what it copied, so it
// takes no part.

const (
	deltaKeyword = "Work"
	deltaFlagged = 100
	deltaUnkeyed = 20
	deltaNew     = 50
)

// copyState is one copy of a message in a folder.
type copyState struct {
	uid   goimap.UID
	flags string // sorted, lower case, space-separated, without \Recent
}

// boxState is a mailbox, message by message: "folder\x00Message-ID" → the
// copies of that message in that folder.
type boxState map[string][]copyState

func key(folder, msgID string) string { return folder + "\x00" + msgID }

func splitKey(k string) (folder, msgID string) {
	folder, msgID, _ = strings.Cut(k, "\x00")
	return folder, msgID
}

var midSection = &goimap.FetchItemBodySection{Specifier: goimap.PartSpecifierHeader, HeaderFields: []string{"Message-ID"}, Peek: true}

// readBox reads user's mailbox over IMAP (straight to Dovecot, never
// through -rtt's proxy): every folder's messages, by Message-ID, with
// their flags.
func readBox(addr, user, password string) (boxState, error) {
	c, err := imapLogin(addr, user, password)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	boxes, err := c.List("", "*", nil).Collect()
	if err != nil {
		return nil, err
	}
	st := boxState{}
	for _, b := range boxes {
		if hasAttr(b.Attrs, goimap.MailboxAttrNoSelect) {
			continue
		}
		sel, err := c.Select(b.Mailbox, &goimap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			return nil, fmt.Errorf("EXAMINE %s: %w", b.Mailbox, err)
		}
		if sel.NumMessages == 0 {
			continue
		}
		msgs, err := c.Fetch(goimap.SeqSet{goimap.SeqRange{Start: 1, Stop: 0}}, &goimap.FetchOptions{
			UID: true, Flags: true, BodySection: []*goimap.FetchItemBodySection{midSection},
		}).Collect()
		if err != nil {
			return nil, fmt.Errorf("FETCH %s: %w", b.Mailbox, err)
		}
		for _, m := range msgs {
			var fl []string
			for _, f := range m.Flags {
				if !strings.EqualFold(string(f), `\Recent`) {
					fl = append(fl, strings.ToLower(string(f)))
				}
			}
			sort.Strings(fl)
			k := key(b.Mailbox, messageID(m.FindBodySection(midSection)))
			st[k] = append(st[k], copyState{uid: m.UID, flags: strings.Join(fl, " ")})
		}
	}
	c.Logout().Wait()
	return st, nil
}

// messageID is the Message-ID field's value in a header section, "" if
// none.
func messageID(header []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(header))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.EqualFold(strings.TrimSpace(name), "Message-ID") {
			return strings.TrimSpace(value)
		}
	}
	return ""
}

func (c copyState) has(flag string) bool {
	for _, f := range strings.Fields(c.flags) {
		if f == strings.ToLower(flag) {
			return true
		}
	}
	return false
}

// boxDiff is how a destination differs from its source.
type boxDiff struct {
	missing int // messages at the source with fewer copies at the destination
	extra   int // copies at the destination beyond the source's
	flags   int // messages whose flags differ
	example string
}

func (d boxDiff) String() string {
	if d.missing+d.extra+d.flags == 0 {
		return "none"
	}
	var parts []string
	if d.missing > 0 {
		parts = append(parts, fmt.Sprintf("%d missing", d.missing))
	}
	if d.extra > 0 {
		parts = append(parts, fmt.Sprintf("%d extra", d.extra))
	}
	if d.flags > 0 {
		parts = append(parts, fmt.Sprintf("%d with other flags", d.flags))
	}
	return strings.Join(parts, ", ")
}

// compareBoxes compares a destination with its source, message by message.
// A message is compared by its first copy at each side.
func compareBoxes(src, dst boxState) boxDiff {
	var d boxDiff
	note := func(format string, a ...any) {
		if d.example == "" {
			d.example = fmt.Sprintf(format, a...)
		}
	}
	for k, s := range src {
		t := dst[k]
		folder, id := splitKey(k)
		switch {
		case len(t) < len(s):
			d.missing += len(s) - len(t)
			note("%s %s: %d copies, want %d", folder, id, len(t), len(s))
		case len(t) > len(s):
			d.extra += len(t) - len(s)
			note("%s %s: %d copies, want %d", folder, id, len(t), len(s))
		}
		if len(t) > 0 && t[0].flags != s[0].flags {
			d.flags++
			note("%s %s: flags %q, want %q", folder, id, t[0].flags, s[0].flags)
		}
	}
	for k, t := range dst {
		if _, ok := src[k]; !ok {
			d.extra += len(t)
			folder, id := splitKey(k)
			note("%s %s: not at the source", folder, id)
		}
	}
	return d
}

// deltaChange is what step 4 changed at the source.
type deltaChange struct {
	flagged, unkeyed, added []string // keys
}

// pick takes n of the keys that ok allows, spread evenly over them (the
// keys sorted, so every tool gets the same).
func pick(st boxState, n int, ok func(k string, c copyState) bool) []string {
	var cands []string
	for k, cs := range st {
		if len(cs) == 1 && ok(k, cs[0]) {
			cands = append(cands, k)
		}
	}
	sort.Strings(cands)
	if len(cands) <= n {
		return cands
	}
	out := make([]string, n)
	for i := range out {
		out[i] = cands[i*len(cands)/n]
	}
	return out
}

// storeFlags adds or removes flag on the messages keys name.
func storeFlags(c *imapclient.Client, st boxState, keys []string, op goimap.StoreFlagsOp, flag goimap.Flag) error {
	byFolder := map[string]goimap.UIDSet{}
	for _, k := range keys {
		folder, _ := splitKey(k)
		set := byFolder[folder]
		set.AddNum(st[k][0].uid)
		byFolder[folder] = set
	}
	var folders []string
	for f := range byFolder {
		folders = append(folders, f)
	}
	sort.Strings(folders)
	for _, f := range folders {
		if _, err := c.Select(f, nil).Wait(); err != nil {
			return fmt.Errorf("SELECT %s: %w", f, err)
		}
		if err := c.Store(byFolder[f], &goimap.StoreFlags{Op: op, Silent: true, Flags: []goimap.Flag{flag}}, nil).Close(); err != nil {
			return fmt.Errorf("STORE %s: %w", f, err)
		}
	}
	return nil
}

// seedKeywords gives deltaKeyword to every tenth message of the source.
func seedKeywords(addr, user, password string) error {
	st, err := readBox(addr, user, password)
	if err != nil {
		return err
	}
	var keys []string
	for k := range st {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var tenth []string
	for i, k := range keys {
		if i%10 == 3 {
			tenth = append(tenth, k)
		}
	}
	c, err := imapLogin(addr, user, password)
	if err != nil {
		return err
	}
	defer c.Close()
	return storeFlags(c, st, tenth, goimap.StoreFlagsAdd, deltaKeyword)
}

// changeSource makes step 4's change at the source, as a mail client
// would: STORE and APPEND.
func changeSource(addr, user, password string, st boxState) (deltaChange, error) {
	// 120 messages changed, not fewer: none is in both lists.
	ch := deltaChange{unkeyed: pick(st, deltaUnkeyed, func(_ string, c copyState) bool { return c.has(deltaKeyword) })}
	unkeyed := map[string]bool{}
	for _, k := range ch.unkeyed {
		unkeyed[k] = true
	}
	ch.flagged = pick(st, deltaFlagged, func(k string, c copyState) bool { return !c.has(`\Flagged`) && !unkeyed[k] })
	if len(ch.flagged) < deltaFlagged || len(ch.unkeyed) < deltaUnkeyed {
		return ch, fmt.Errorf("the source has %d messages without \\Flagged and %d with %s: too few", len(ch.flagged), len(ch.unkeyed), deltaKeyword)
	}
	c, err := imapLogin(addr, user, password)
	if err != nil {
		return ch, err
	}
	defer c.Close()
	if err := storeFlags(c, st, ch.flagged, goimap.StoreFlagsAdd, goimap.FlagFlagged); err != nil {
		return ch, err
	}
	if err := storeFlags(c, st, ch.unkeyed, goimap.StoreFlagsDel, deltaKeyword); err != nil {
		return ch, err
	}
	if err := c.Unselect().Wait(); err != nil {
		return ch, err
	}
	for i := range deltaNew {
		folder := imapFolders[i%len(imapFolders)]
		id := fmt.Sprintf("<delta-%d@example.org>", i)
		var b strings.Builder
		fmt.Fprintf(&b, "From: Sender %d <sender%d@example.org>\r\nTo: user@example.net\r\nSubject: New since the first copy %d\r\n", i, i, i)
		fmt.Fprintf(&b, "Date: Mon, 23 Nov 2026 09:%02d:00 +0000\r\nMessage-ID: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", i, id)
		for b.Len() < 3000+i*100 {
			b.WriteString("a message that arrived at the source after the first copy, to be carried by the next pass\r\n")
		}
		var flags []goimap.Flag
		if i%2 == 0 {
			flags = append(flags, goimap.FlagSeen)
		}
		date := time.Date(2026, 11, 23, 9, i, 0, 0, time.UTC)
		cmd := c.Append(folder, int64(b.Len()), &goimap.AppendOptions{Flags: flags, Time: date})
		if _, err := cmd.Write([]byte(b.String())); err != nil {
			return ch, err
		}
		if err := cmd.Close(); err != nil {
			return ch, err
		}
		if _, err := cmd.Wait(); err != nil {
			return ch, fmt.Errorf("APPEND %s: %w", folder, err)
		}
		ch.added = append(ch.added, key(folder, id))
	}
	c.Logout().Wait()
	return ch, nil
}

// carried counts how much of a change a pass carried, from the
// destination before it and after: a flag added at the source that the
// destination now has and did not; a keyword removed that the destination
// had (had counts those) and has no longer; a new message copied (dups
// counts the copies beyond one).
func (ch deltaChange) carried(before, after boxState) (flagged, unkeyed, had, added, dups int) {
	has := func(st boxState, k, flag string) bool { cs := st[k]; return len(cs) > 0 && cs[0].has(flag) }
	for _, k := range ch.flagged {
		if !has(before, k, `\Flagged`) && has(after, k, `\Flagged`) {
			flagged++
		}
	}
	for _, k := range ch.unkeyed {
		if has(before, k, deltaKeyword) {
			had++
			if len(after[k]) > 0 && !has(after, k, deltaKeyword) {
				unkeyed++
			}
		}
	}
	for _, k := range ch.added {
		if n := len(after[k]); n > 0 {
			added++
			dups += n - 1
		}
	}
	return flagged, unkeyed, had, added, dups
}

// deltaRun is one tool's sequence in one round.
type deltaRun struct {
	full, same, changed       measure
	fullDiff, sameDiff, after boxDiff
	flagged, unkeyed, added   int
	unkeyedHad, dups          int
}

type deltaResult struct {
	name string
	runs []deltaRun
}

func (r *imapRun) delta(cache string) ([]deltaResult, error) {
	e := r.e
	direct := e.imap // the checks and the changes never go through the proxy
	var names []string
	for _, n := range r.names {
		if n != "limit" {
			names = append(names, n)
		}
	}
	by := map[string]*deltaResult{}
	for _, n := range names {
		by[n] = &deltaResult{name: n}
	}
	for round := 0; round < r.o.runs; round++ {
		for _, name := range names {
			exec.Command("doveadm", "-c", e.dovecotConf, "kick", imapSrc).Run()
			if err := e.seedFolders(imapSrc, cache); err != nil {
				return nil, err
			}
			if err := seedKeywords(direct, imapSrc, e.password); err != nil {
				return nil, fmt.Errorf("the source's keywords: %v", err)
			}
			src, err := readBox(direct, imapSrc, e.password)
			if err != nil {
				return nil, err
			}
			if err := e.resetIMAP(imapDst, r.state, r.mbstate); err != nil {
				return nil, err
			}
			var dr deltaRun
			pass := func(what string, m *measure, diff *boxDiff, src boxState) (boxState, error) {
				cmd := r.modes[name]()
				logf := r.profiled(cmd, name, fmt.Sprintf("%s-%d", what, round+1))
				var err error
				*m, err = timed(cmd)
				if logf != nil {
					logf.Close()
				}
				if err != nil {
					return nil, fmt.Errorf("%s, %s: %v", name, what, err)
				}
				dst, err := readBox(direct, imapDst, e.password)
				if err != nil {
					return nil, err
				}
				*diff = compareBoxes(src, dst)
				fmt.Printf("   %-13s run %d, %-8s %6.2f s  CPU %5.1f s  peak RSS %6.1f MB  machine busy %3.0f%%  differences: %s\n",
					name, round+1, what+":", m.wall.Seconds(), m.cpu.Seconds(), float64(m.rssKB)/1024, 100*m.busy, diff)
				if diff.example != "" {
					fmt.Printf("      e.g. %s\n", diff.example)
				}
				return dst, nil
			}
			if _, err := pass("full", &dr.full, &dr.fullDiff, src); err != nil {
				return nil, err
			}
			before, err := pass("same", &dr.same, &dr.sameDiff, src)
			if err != nil {
				return nil, err
			}
			ch, err := changeSource(direct, imapSrc, e.password, src)
			if err != nil {
				return nil, fmt.Errorf("the change at the source: %v", err)
			}
			src2, err := readBox(direct, imapSrc, e.password)
			if err != nil {
				return nil, err
			}
			after, err := pass("changed", &dr.changed, &dr.after, src2)
			if err != nil {
				return nil, err
			}
			dr.flagged, dr.unkeyed, dr.unkeyedHad, dr.added, dr.dups = ch.carried(before, after)
			fmt.Printf("      carried: \\Flagged added %d/%d, %s removed %d/%d (the destination had it on %d), new %d/%d (%d copies more)\n",
				dr.flagged, len(ch.flagged), deltaKeyword, dr.unkeyed, len(ch.unkeyed), dr.unkeyedHad, dr.added, len(ch.added), dr.dups)
			by[name].runs = append(by[name].runs, dr)
		}
	}
	var out []deltaResult
	for _, n := range names {
		out = append(out, *by[n])
	}
	return out, nil
}

// median of the runs' values.
func median[T any](runs []T, f func(T) float64) float64 {
	v := make([]float64, len(runs))
	for i, r := range runs {
		v[i] = f(r)
	}
	sort.Float64s(v)
	return v[len(v)/2]
}

func deltaMarkdown(o options, rtt time.Duration, total int64, rs []deltaResult) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "## Delta passes\n\n")
	fmt.Fprintf(&b, "%s, on %s: %s, %d CPUs, %s; %s; %s; %s.\n\n", time.Now().UTC().Format("2006-01-02"), host,
		cpuModel(), runtime.NumCPU(), memTotal(), version("dovecot", "--version"), version("mbsync", "--version"), "imapsync 2.229")
	fmt.Fprintf(&b, "The source of the IMAP bench (%d messages, %.1f MB over 10 folders, every tenth message with the keyword %s), "+
		"copied in full into an empty destination; then a pass over the unchanged source; then, at the source, \\Flagged added to %d messages, "+
		"%s removed from %d, %d new messages (about 3-8 KB), and the next pass. mbsync keeps its SyncState and mailflow its --state between "+
		"the passes; imapsync has none. After each pass the destination is compared with the source message by message (Message-ID and "+
		"flags, per folder). Median of %d rounds (the tools in turn); CPU is the tool's own. `go run ./bench -imap -delta",
		o.n, float64(total)/(1<<20), deltaKeyword, deltaFlagged, deltaKeyword, deltaUnkeyed, deltaNew, o.runs)
	if rtt > 0 {
		fmt.Fprintf(&b, " -rtt %v", rtt)
	}
	b.WriteString("` reproduces it.\n\n")
	if rtt > 0 {
		fmt.Fprintf(&b, "Every tool's sessions went through the bench's proxy delaying each direction %v (RTT %v).\n\n", rtt/2, rtt)
	}
	b.WriteString("| tool | first copy | unchanged: wall | CPU | changed: wall | CPU | \\Flagged added | keyword removed | new copied | differences after the first copy | after the unchanged pass | after the changed pass |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|\n")
	for _, r := range rs {
		last := r.runs[len(r.runs)-1]
		unkeyed := fmt.Sprintf("%d/%d", int(median(r.runs, func(d deltaRun) float64 { return float64(d.unkeyed) })), deltaUnkeyed)
		if had := int(median(r.runs, func(d deltaRun) float64 { return float64(d.unkeyedHad) })); had < deltaUnkeyed {
			unkeyed += fmt.Sprintf(" (the destination had it on %d)", had)
		}
		added := fmt.Sprintf("%d/%d", int(median(r.runs, func(d deltaRun) float64 { return float64(d.added) })), deltaNew)
		if dups := int(median(r.runs, func(d deltaRun) float64 { return float64(d.dups) })); dups > 0 {
			added += fmt.Sprintf(" (+%d copies)", dups)
		}
		fmt.Fprintf(&b, "| %s | %.1f s | %.2f s | %.2f s | %.2f s | %.2f s | %d/%d | %s | %s | %s | %s | %s |\n", r.name,
			median(r.runs, func(d deltaRun) float64 { return d.full.wall.Seconds() }),
			median(r.runs, func(d deltaRun) float64 { return d.same.wall.Seconds() }),
			median(r.runs, func(d deltaRun) float64 { return d.same.cpu.Seconds() }),
			median(r.runs, func(d deltaRun) float64 { return d.changed.wall.Seconds() }),
			median(r.runs, func(d deltaRun) float64 { return d.changed.cpu.Seconds() }),
			int(median(r.runs, func(d deltaRun) float64 { return float64(d.flagged) })), deltaFlagged,
			unkeyed, added,
			last.fullDiff, last.sameDiff, last.after)
	}
	b.WriteString("\nThe difference columns are the last round's (they did not vary between rounds unless said below).\n")
	return b.String()
}
