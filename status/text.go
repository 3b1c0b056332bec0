package status

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/mailflow/mailflow/internal/human"
)

// WriteText writes the health as "mailflow status" shows it in a terminal.
func (h Health) WriteText(w io.Writer) {
	if h.Status == "ok" {
		fmt.Fprintln(w, "ok: mail is moving")
	} else {
		fmt.Fprintln(w, "DEGRADED:")
		for _, p := range h.Problems {
			fmt.Fprintf(w, "  - %s\n", p)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nINPUT\tTYPE\tSTATE\tLAST POLL\tNEXT POLL\tTODAY (fetched/delivered/quarantined)\tLAST ERROR")
	for _, in := range h.Inputs {
		state := in.State
		if in.Watching {
			state += ", watching"
		}
		next := "-"
		if !in.NextPoll.IsZero() {
			next = until(in.NextPoll)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d/%d\t%s\n", in.Name, in.Type, state, since(in.LastPoll), next,
			in.Today.Fetched, in.Today.Delivered, in.Today.Quarantined, dash(human.Line(in.LastError)))
	}
	fmt.Fprintln(tw, "\nOUTPUT\tTYPE\tSTATE\tLAST SUCCESS\tLAST FAILURE\tLAST REFUSAL\t")
	for _, out := range h.Outputs {
		state := out.State
		if !out.BackoffUntil.IsZero() {
			state += " until " + out.BackoffUntil.Local().Format(time.TimeOnly)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", out.Name, out.Type, state, since(out.LastSuccess), dash(human.Line(out.LastError)), dash(human.Line(out.LastRefusal)))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nquarantine: %d messages (%d in the last hour); ledger: %d records, %s; config %s", h.Quarantine.Entries, h.Quarantine.LastHour, h.Ledger.Records, human.Bytes(h.Ledger.Bytes), h.Config.Path)
	if !h.Config.Reloaded.IsZero() {
		fmt.Fprintf(w, ", reloaded %s", since(h.Config.Reloaded))
	}
	fmt.Fprintln(w)
	if h.Config.ReloadError != "" {
		fmt.Fprintf(w, "the last reload failed (the config before it runs): %s\n", h.Config.ReloadError)
	}
}

func since(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

func until(t time.Time) string {
	if d := time.Until(t); d > 0 {
		return "in " + d.Round(time.Second).String()
	}
	return "now"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
