package trial

import (
	"fmt"
	"io"
	"strings"

	"github.com/mailflow/mailflow/internal/human"
)

// WriteText writes what the chain would do with the message, as "mailflow
// test" shows it; loose is a chain of scripts given without a pipeline.
func (r *Result) WriteText(w io.Writer, loose bool) {
	fmt.Fprintf(w, "== %s\n", r.Name)
	switch {
	case r.Err != nil && r.By != "":
		fmt.Fprintf(w, "   verdict:    quarantine (script %s broke: %v)\n", r.By, r.Err)
		return
	case r.Err != nil:
		fmt.Fprintf(w, "   error:      %v\n", r.Err)
		return
	case r.HeaderErr != nil:
		fmt.Fprintf(w, "   warning:    header could not be parsed (%s); it flows on untouched\n", human.Line(r.HeaderErr.Error()))
	}
	line := r.Verdict
	if r.By != "" {
		line += " (by " + r.By + ")"
	}
	if r.Reason != "" {
		line += ": " + r.Reason
	}
	fmt.Fprintf(w, "   verdict:    %s\n", line)
	if r.Acts() {
		none := "(none: it would be quarantined)"
		if loose {
			none = "(the pipeline's outputs)"
		}
		fmt.Fprintf(w, "   outputs:    %s\n", listOr(r.Outputs, none))
		fmt.Fprintf(w, "   recipients: %s\n", listOr(r.Recipients, "(each output's own)"))
		if r.Sender != "" {
			fmt.Fprintf(w, "   sender:     %s\n", r.Sender)
		}
	}
	for _, g := range r.Generated {
		sender := g.Sender
		if sender == "" {
			sender = "(the output's)"
		}
		fmt.Fprintf(w, "   generated:  %s through output %s, from %s to %s\n", g.Name, g.Output, sender, strings.Join(g.Recipients, ", "))
		printLines(w, "     ", g.Header)
		printLines(w, "     | ", g.Body)
	}
	if b := r.Body; b != nil {
		fmt.Fprintf(w, "   body:       changed (%d → %d bytes)\n", b.Before, b.After)
		if b.Unreadable != nil {
			fmt.Fprintf(w, "     (unreadable: %v)\n", b.Unreadable)
		}
		for n, p := range b.Parts {
			fmt.Fprintf(w, "     part %d: %s\n", n+1, p.Type)
			printLines(w, "     | ", p.Tail)
		}
	}
	if len(r.Header) == 0 {
		fmt.Fprintln(w, "   header:     unchanged")
		return
	}
	fmt.Fprintln(w, "   header:")
	printLines(w, "     ", r.Header)
}

func printLines(w io.Writer, prefix string, lines []string) {
	for _, l := range lines {
		fmt.Fprintf(w, "%s%s\n", prefix, l)
	}
}

func listOr(xs []string, none string) string {
	if len(xs) == 0 {
		return none
	}
	return strings.Join(xs, ", ")
}
