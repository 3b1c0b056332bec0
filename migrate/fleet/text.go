package fleet

import (
	"fmt"
	"io"

	"github.com/mailflow/mailflow/internal/human"
)

// Tally counts a batch's mailboxes by state.
type Tally struct{ All, Done, Failed int }

// WriteTable writes the statuses, a line a mailbox, and the counts.
func WriteTable(w io.Writer, all map[string]Status) Tally {
	rows := Sorted(all)
	fmt.Fprintf(w, "%-12s %-40s %-9s %-20s %5s %13s %8s %8s  %s\n", "BATCH", "MAILBOX", "STATE", "WORKER", "TRIES", "MESSAGES", "MOVED", "VERIFIED", "ERROR")
	count := map[string]int{}
	for _, st := range rows {
		count[st.State]++
		fmt.Fprintf(w, "%-12s %-40s %-9s %-20s %5d %13s %8d %8s  %s\n", human.Clip(st.Batch, 12), human.Clip(st.Mailbox, 40), st.State,
			human.Clip(st.Worker, 20), st.Tries, fmt.Sprintf("%d/%d", st.Done, st.Total), st.Moved, st.Verified, human.Clip(st.Error, 60))
	}
	fmt.Fprintf(w, "\n%d mailboxes: %d done, %d failed, %d running, %d queued, %d retrying\n", len(rows),
		count["done"], count["failed"], count["running"], count["queued"], count["retrying"])
	return Tally{All: len(rows), Done: count["done"], Failed: count["failed"]}
}
