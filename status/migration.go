package status

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/internal/human"
	"github.com/mailflow/mailflow/migrate"
	"github.com/mailflow/mailflow/migrate/batch"
	"github.com/mailflow/mailflow/migrate/fleet"
)

// MailboxProgress shows one migration's folders: it is the run's
// migrate.Observer, and reads the run's Meter.
type MailboxProgress struct {
	Title string
	meter atomic.Pointer[migrate.Meter]
}

// Started implements migrate.Observer.
func (m *MailboxProgress) Started(mt *migrate.Meter) { m.meter.Store(mt) }

// Message implements migrate.Observer.
func (m *MailboxProgress) Message(engine.MessageEvent) {}

// Waiting implements migrate.Observer.
func (m *MailboxProgress) Waiting(string, time.Duration) {}

// View implements Migration.
func (m *MailboxProgress) View() MigrationView {
	v := MigrationView{Title: m.Title, Columns: []string{"Folder", "Messages", "Size", "Done"}}
	mt := m.meter.Load()
	if mt == nil {
		v.Summary = "surveying the source…"
		return v
	}
	p := mt.Progress()
	v.Summary = ProgressLine(p.Done.Messages, p.Total.Messages, p.Done.Bytes, p.Total.Bytes, p.Rate, p.ETA)
	if p.Waiting != "" {
		v.Summary += "; " + p.Waiting
	}
	for _, f := range p.Folders {
		done := "—"
		if f.Total.Messages > 0 {
			done = fmt.Sprintf("%.0f%%", 100*float64(f.Done.Messages)/float64(f.Total.Messages))
		}
		v.Rows = append(v.Rows, []string{f.Folder, fmt.Sprintf("%d/%d", f.Done.Messages, f.Total.Messages), human.Bytes(f.Total.Bytes), done})
	}
	return v
}

// BatchProgress shows a batch's mailboxes.
type BatchProgress struct {
	Runner *batch.Runner
	Jobs   []*batch.Job
}

// View implements Migration.
func (b BatchProgress) View() MigrationView {
	v := MigrationView{Title: "Batch", Columns: []string{"Mailbox", "State", "Tries", "Messages", "Msg/s", "Verified", "Error"}}
	var done, failed int
	b.Runner.Each(b.Jobs, func(j *batch.Job) {
		verified := ""
		if j.Report != nil {
			verified = j.Report.Verified()
		}
		switch j.State {
		case batch.Done:
			done++
		case batch.Failed:
			failed++
		}
		v.Rows = append(v.Rows, []string{j.Name, string(j.State), fmt.Sprint(j.Tries),
			fmt.Sprintf("%d/%d", j.Progress.Done.Messages, j.Progress.Total.Messages), fmt.Sprintf("%.1f", j.Progress.Rate), verified, j.Error()})
	})
	v.Summary = fmt.Sprintf("%d mailboxes: %d done, %d failed", len(b.Jobs), done, failed)
	return v
}

// FleetProgress shows a fleet's mailboxes, as last read from its bucket.
type FleetProgress struct {
	last atomic.Pointer[map[string]fleet.Status]
}

// Set gives it a new reading.
func (f *FleetProgress) Set(all map[string]fleet.Status) { f.last.Store(&all) }

// View implements Migration.
func (f *FleetProgress) View() MigrationView {
	v := MigrationView{Title: "Fleet", Columns: []string{"Batch", "Mailbox", "State", "Worker", "Tries", "Messages", "Moved", "Verified", "Error"}}
	all := f.last.Load()
	if all == nil {
		v.Summary = "reading the fleet's status…"
		return v
	}
	count := map[string]int{}
	for _, st := range fleet.Sorted(*all) {
		count[st.State]++
		v.Rows = append(v.Rows, []string{st.Batch, st.Mailbox, st.State, st.Worker, fmt.Sprint(st.Tries),
			fmt.Sprintf("%d/%d", st.Done, st.Total), fmt.Sprint(st.Moved), st.Verified, st.Error})
	}
	v.Summary = fmt.Sprintf("%d mailboxes: %d done, %d failed, %d running, %d queued, %d retrying", len(*all),
		count["done"], count["failed"], count["running"], count["queued"], count["retrying"])
	return v
}

var (
	_ Migration        = (*MailboxProgress)(nil)
	_ migrate.Observer = (*MailboxProgress)(nil)
	_ Migration        = BatchProgress{}
	_ Migration        = (*FleetProgress)(nil)
)
