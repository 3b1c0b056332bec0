// Package bar shows a migration's progress in a terminal: bars overall
// and per folder (vbauerster/mpb) where the output is a terminal, a line
// every few seconds where it is not. It reads the run's migrate.Meter.
package bar

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/internal/human"
	"github.com/mailflow/mailflow/migrate"
)

// Bar shows how far a migration is: on a terminal a bar overall and one
// per folder being moved (gone once the folder is done), otherwise a line
// every few seconds. It is the run's migrate.Observer.
type Bar struct {
	mode string
	w    io.Writer
	p    *mpb.Progress // with mode bar, made at once so that logs can go above it (Logs)

	meter   *migrate.Meter
	bar     *mpb.Bar
	folders map[string]*mpb.Bar // made at Started, then only read
	stop    chan struct{}
	wg      sync.WaitGroup
}

// New shows progress on w. mode is bar, log (a line every 5 s), none, or
// auto (bar on a terminal).
func New(mode string, w io.Writer) *Bar {
	if mode == "auto" {
		mode = "log"
		if IsTerminal(w) {
			mode = "bar"
		}
	}
	pr := &Bar{mode: mode, w: w, stop: make(chan struct{})}
	if mode == "bar" {
		pr.p = mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
	}
	return pr
}

// Started implements migrate.Observer.
func (pr *Bar) Started(m *migrate.Meter) {
	pr.meter = m
	t := m.Totals()
	fmt.Fprintf(pr.w, "moving %d messages (%s); %d already moved earlier\n", t.ToMove.Messages, human.Bytes(t.ToMove.Bytes), t.MovedEarlier.Messages)
	switch pr.mode {
	case "bar":
		pr.bar = pr.p.AddBar(max(t.ToMove.Bytes, 1),
			mpb.PrependDecorators(
				decor.Name("all ", decor.WCSyncSpaceR),
				decor.Any(func(decor.Statistics) string {
					return fmt.Sprintf("%d/%d msgs", m.Progress().Done.Messages, t.ToMove.Messages)
				}, decor.WCSyncSpaceR),
				decor.Counters(decor.SizeB1000(0), "% .1f / % .1f", decor.WCSyncSpace),
			),
			mpb.AppendDecorators(
				decor.AverageSpeed(decor.SizeB1000(0), "% .1f", decor.WCSyncSpace),
				decor.Any(func(decor.Statistics) string { return fmt.Sprintf("%.0f msg/s", m.Progress().Rate) }, decor.WCSyncSpace),
				decor.Name(" ETA "), decor.AverageETA(decor.ET_STYLE_GO),
			),
		)
		if len(t.Folders) > 1 {
			pr.folders = map[string]*mpb.Bar{}
			for _, f := range t.FolderNames() {
				c := t.Folders[f]
				pr.folders[f] = pr.p.AddBar(max(c.Bytes, 1), mpb.BarRemoveOnComplete(),
					mpb.PrependDecorators(
						decor.Name(human.Clip(f, 24), decor.WCSyncSpaceR),
						decor.Name(fmt.Sprintf("%d msgs", c.Messages), decor.WCSyncSpaceR),
						decor.Counters(decor.SizeB1000(0), "% .1f / % .1f", decor.WCSyncSpace),
					),
					mpb.AppendDecorators(decor.Percentage(decor.WCSyncSpace)),
				)
			}
		}
	case "log":
		pr.wg.Add(1)
		go func() {
			defer pr.wg.Done()
			t := time.NewTicker(5 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-pr.stop:
					return
				case <-t.C:
					fmt.Fprintln(pr.w, m.Progress())
				}
			}
		}()
	}
}

// Waiting implements migrate.Observer: a server asked the run to wait.
func (pr *Bar) Waiting(why string, d time.Duration) {
	fmt.Fprintf(pr.Logs(), "waiting: the server asked for %s (%s)\n", d.Round(time.Second), human.Line(why))
}

// Message implements migrate.Observer.
func (pr *Bar) Message(ev engine.MessageEvent) {
	if pr.bar != nil {
		pr.bar.EwmaIncrInt64(ev.Bytes, ev.Took)
	}
	if b := pr.folders[ev.Folder]; b != nil {
		b.IncrInt64(ev.Bytes)
	}
}

// Logs is where log lines should go so that they show above the bars and
// not through them; w itself when there are no bars.
func (pr *Bar) Logs() io.Writer {
	if pr.p != nil {
		return pr.p
	}
	return pr.w
}

// Finish draws the end and stops.
func (pr *Bar) Finish() {
	close(pr.stop)
	pr.wg.Wait()
	switch {
	case pr.bar != nil:
		for _, b := range pr.folders {
			b.Abort(true)
		}
		pr.bar.SetTotal(-1, true)
		pr.p.Wait()
	case pr.p != nil:
		pr.p.Shutdown()
	case pr.mode == "log" && pr.meter != nil && pr.meter.Totals().ToMove.Messages > 0:
		fmt.Fprintln(pr.w, pr.meter.Progress())
	}
}

// IsTerminal reports whether w is a terminal (not a pipe or a file).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

var _ migrate.Observer = (*Bar)(nil)
