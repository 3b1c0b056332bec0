package batch

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mailflow/mailflow/internal/human"
	"github.com/mailflow/mailflow/migrate"
)

// Line says how the job stands, in a line.
func (j *Job) Line() string {
	switch {
	case j.State == Running:
		return fmt.Sprintf("running (try %d)", j.Tries)
	case j.State == Done:
		return fmt.Sprintf("done: moved %d, verified: %s", j.Report.Moved, j.Report.Verified())
	case j.State == Retrying:
		return fmt.Sprintf("failed (%s); retrying in %v", j.Error(), j.RetryIn())
	}
	return fmt.Sprintf("%s: %s", j.State, j.Error())
}

// WriteTable writes where each job stands, a line each, as a running
// batch shows it. It holds r still while it reads.
func (r *Runner) WriteTable(w io.Writer, jobs []*Job) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "%-44s %-9s %15s %9s  %s\n", "MAILBOX", "STATE", "MESSAGES", "MSG/S", "ERROR")
	for _, j := range jobs {
		fmt.Fprintf(&b, "%-44s %-9s %15s %9.1f  %s\n", human.Clip(j.Name, 44), j.State,
			fmt.Sprintf("%d/%d", j.Progress.Done.Messages, j.Progress.Total.Messages), j.Progress.Rate, human.Clip(j.Error(), 60))
	}
	io.WriteString(w, b.String())
}

// WriteSummary writes the batch's outcome, a line per mailbox, and counts
// the failed and quarantined.
func WriteSummary(w io.Writer, jobs []*Job) (failed, quarantined int) {
	fmt.Fprintf(w, "\n%-44s %-7s %6s %8s %9s %8s  %s\n", "MAILBOX", "STATE", "TRIES", "MOVED", "VERIFIED", "TIME", "ERROR")
	done := 0
	for _, j := range jobs {
		moved, verified := "", ""
		if j.Report != nil {
			moved, verified = fmt.Sprint(j.Report.Moved), j.Report.Verified()
		}
		fmt.Fprintf(w, "%-44s %-7s %6d %8s %9s %8s  %s\n", human.Clip(j.Name, 44), j.State, j.Tries, moved, verified, j.Took.Round(time.Second), j.Error())
		switch {
		case j.State != Done:
			failed++
		case j.Report.Result() == migrate.DoneQuarantined:
			quarantined++
			done++
		default:
			done++
		}
	}
	fmt.Fprintf(w, "\n%d mailboxes: %d done, %d failed\n", len(jobs), done, failed)
	return failed, quarantined
}
