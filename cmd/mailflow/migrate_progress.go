package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/migrate"
)

// progress shows how far a migration is: on a terminal a bar overall and
// one per folder being moved (gone once the folder is done), otherwise a
// line every few seconds. It reads the run's migrate.Meter.
type progress struct {
	mode string
	w    io.Writer
	p    *mpb.Progress // with mode bar, made at once so that logs can go above it

	meter   *migrate.Meter
	bar     *mpb.Bar
	folders map[string]*mpb.Bar // made at Started, then only read
	stop    chan struct{}
	wg      sync.WaitGroup
}

func newProgress(mode string, w io.Writer) *progress {
	if mode == "auto" {
		mode = "log"
		if f, ok := w.(*os.File); ok && isTerminal(f) {
			mode = "bar"
		}
	}
	pr := &progress{mode: mode, w: w, stop: make(chan struct{})}
	if mode == "bar" {
		pr.p = mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
	}
	return pr
}

// Started implements migrate.Observer.
func (pr *progress) Started(m *migrate.Meter) {
	pr.meter = m
	t := m.Totals()
	fmt.Fprintf(pr.w, "moving %d messages (%s); %d already moved earlier\n", t.ToMove.Messages, humanBytes(t.ToMove.Bytes), t.MovedEarlier.Messages)
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
						decor.Name(clip(f, 24), decor.WCSyncSpaceR),
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
					fmt.Fprintln(pr.w, progressLine(m.Progress()))
				}
			}
		}()
	}
}

// Message implements migrate.Observer.
func (pr *progress) Message(ev engine.MessageEvent) {
	if pr.bar != nil {
		pr.bar.EwmaIncrInt64(ev.Bytes, ev.Took)
	}
	if b := pr.folders[ev.Folder]; b != nil {
		b.IncrInt64(ev.Bytes)
	}
}

func progressLine(p migrate.Progress) string {
	eta := "?"
	if p.ETA > 0 {
		eta = p.ETA.Round(time.Second).String()
	}
	return fmt.Sprintf("progress: %d/%d messages, %s/%s, %.1f msg/s, ETA %s",
		p.Done.Messages, p.Total.Messages, humanBytes(p.Done.Bytes), humanBytes(p.Total.Bytes), p.Rate, eta)
}

func (pr *progress) finish() {
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
		fmt.Fprintln(pr.w, progressLine(pr.meter.Progress()))
	}
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

var _ migrate.Observer = (*progress)(nil)
