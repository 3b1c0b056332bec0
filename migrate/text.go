package migrate

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/mailflow/mailflow/internal/human"
	"github.com/mailflow/mailflow/migrate/survey"
)

// WriteText writes the report as a person reads it. conf is what to give
// "mailflow quarantine resend -c" for a refused message.
func (r *Report) WriteText(w io.Writer, conf string) {
	// Written whole at the end: the table alone was about a hundred
	// writes of a few bytes each, a system call apiece.
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	w = bw
	fmt.Fprintf(w, "moved:                  %d (%s in %v)\n", r.Moved, human.Bytes(r.MovedBytes), time.Duration(r.Seconds*float64(time.Second)).Round(time.Millisecond))
	fmt.Fprintf(w, "skipped, already moved: %d\n", r.AlreadyMoved)
	if r.AlreadyThere > 0 {
		fmt.Fprintf(w, "found at the destination already and not copied again: %d\n", r.AlreadyThere)
	}
	if r.FlagsUpdated > 0 {
		fmt.Fprintf(w, "flags updated:          %d (changed at the source since they were moved)\n", r.FlagsUpdated)
	}
	if r.DeletedThere > 0 {
		fmt.Fprintf(w, "deleted there too:      %d (deleted at the source since they were moved)\n", r.DeletedThere)
	}
	if r.Left > 0 {
		fmt.Fprintf(w, "left, older than --since: %d\n", r.Left)
	}
	if r.InDoubt > 0 {
		fmt.Fprintf(w, "in doubt, sent again:   %d (they were being sent when mailflow was stopped, or the reply was lost; an IMAP destination is searched for each Message-ID first, an SMTP one may hold two copies)\n", r.InDoubt)
	}
	fmt.Fprintf(w, "too large:              %d\n", r.TooLarge)
	fmt.Fprintf(w, "refused or quarantined: %d\n", len(r.Refused))
	for _, q := range r.Refused {
		fmt.Fprintf(w, "  %s <%s>: %s (mailflow quarantine resend -c %s %s)\n", q.SourceID, q.MessageID, human.Line(q.Reason), conf, q.QuarantineID)
	}
	if r.Deferred > 0 {
		fmt.Fprintf(w, "deferred, still on the old server: %d (run again to retry)\n", r.Deferred)
	}
	if len(r.RefusedFolders) > 0 {
		fmt.Fprintf(w, "folders the destination refused, left on the old server: %d (a retry cannot help; see below)\n", len(r.RefusedFolders))
		for _, f := range r.RefusedFolders {
			fmt.Fprintf(w, "  %s: %d messages (%s): %s\n", f.Folder, f.Messages, human.Bytes(f.Bytes), human.Line(f.Reason))
		}
	}
	for _, v := range r.Verifications {
		if v.Error != "" {
			fmt.Fprintf(w, "verification of %s → %s failed: %s\n", v.Input, v.Output, v.Error)
			continue
		}
		fmt.Fprintf(w, "verification, %s → %s, by Message-ID (without one: by Date, From, Subject and size):\n", v.Input, v.Output)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  FOLDER\tAT SOURCE\tFOUND\tMISSING\tOTHER FLAGS\tWITHOUT MESSAGE-ID\tNOT CHECKED\t")
		for _, c := range v.Folders {
			note, flags := "", fmt.Sprint(len(c.FlagsDiffer))
			if c.Unchanged {
				note = "unchanged since the last check"
			}
			if c.ReadChanged > 0 {
				note = fmt.Sprintf("%d changed since the last check, read with their copies", c.ReadChanged)
			}
			if c.FlagsNotCompared {
				flags = "-" // the destination cannot say its flags
			}
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%s\t%d\t%d\t%s\n", c.Folder, c.Source, c.Found, len(c.Missing), flags, c.Made, c.Unnamed, note)
		}
		tw.Flush()
		if slices.ContainsFunc(v.Folders, func(c survey.FolderCheck) bool { return c.FlagsNotCompared }) {
			fmt.Fprintf(w, "  (OTHER FLAGS -: %s cannot say the flags it holds; only presence was checked)\n", v.Output)
		}
		for _, c := range v.Folders {
			for _, id := range c.Missing {
				fmt.Fprintf(w, "  missing in %s: <%s>\n", c.Folder, id)
			}
			for _, id := range c.FlagsDiffer {
				fmt.Fprintf(w, "  other flags in %s: <%s>\n", c.Folder, id)
			}
		}
	}
	for _, u := range r.Unverified {
		fmt.Fprintf(w, "not verified, %s → %s: %s\n", u.Input, u.Output, u.Why)
	}
	if r.SourceDeleted > 0 || r.SourceMovedFirst > 0 {
		fmt.Fprintf(w, "deleted at the source:  %d", r.SourceDeleted)
		if r.SourceMovedFirst > 0 {
			fmt.Fprintf(w, " (%d of them arrived during the run and were moved first)", r.SourceMovedFirst)
		}
		fmt.Fprintln(w)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "not done (%s): %s\n", e.Class, e.Message)
	}
}

// WriteDryRun writes what a dry run found: a line per message that would
// move (or stay, and why), the folders, and the totals.
func WriteDryRun(stdout io.Writer, list []Planned, totals Totals) {
	fmt.Fprintf(stdout, "%-6s %10s  %-16s  %-16s  %-28s  %s\n", "#", "SIZE", "DATE", "FOLDER", "FROM", "SUBJECT")
	var stay Count
	for i, it := range list {
		note, date := "", ""
		if it.Stays != "" {
			note = "  [" + it.Stays + ": stays]"
		}
		if it.Stays == "dated before --since" {
			stay = Count{Messages: stay.Messages + 1, Bytes: stay.Bytes + it.Size}
		}
		if !it.Date.IsZero() {
			date = it.Date.UTC().Format("2006-01-02 15:04")
		}
		fmt.Fprintf(stdout, "%-6d %10d  %-16s  %-16s  %-28s  %s%s\n", i+1, it.Size, date, human.Clip(it.Folder, 16), human.Clip(it.From, 28), human.Clip(it.Subject, 50), note)
	}
	fmt.Fprintln(stdout)
	if _, bare := totals.Folders[""]; len(totals.Folders) > 1 || len(totals.Folders) == 1 && !bare {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "FOLDER\tTO MOVE\tSIZE\t")
		for _, f := range totals.FolderNames() {
			fmt.Fprintf(tw, "%s\t%d\t%s\t\n", f, totals.Folders[f].Messages, human.Bytes(totals.Folders[f].Bytes))
		}
		tw.Flush()
	}
	fmt.Fprintf(stdout, "\nwould move %d messages, %s; %d already moved, %d too large, %d dated before --since\n",
		totals.ToMove.Messages-stay.Messages, human.Bytes(totals.ToMove.Bytes-stay.Bytes), totals.MovedEarlier.Messages, totals.TooLarge.Messages, stay.Messages)
}

// String is the progress in a line.
func (p Progress) String() string {
	eta := "?"
	if p.ETA > 0 {
		eta = p.ETA.Round(time.Second).String()
	}
	if p.Waiting != "" {
		eta = p.Waiting
	}
	return fmt.Sprintf("progress: %d/%d messages, %s/%s, %.1f msg/s, ETA %s",
		p.Done.Messages, p.Total.Messages, human.Bytes(p.Done.Bytes), human.Bytes(p.Total.Bytes), p.Rate, eta)
}
