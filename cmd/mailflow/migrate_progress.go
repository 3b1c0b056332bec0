package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/mailflow/mailflow/engine"
)

// progress shows how far a migration is: on a terminal a bar overall and
// one per folder being moved (gone once the folder is done), otherwise a
// log line every few seconds. It is the engine's Observer during the run.
type progress struct {
	engine.NopObserver

	total      int
	totalBytes int64
	msgs       atomic.Int64
	bytes      atomic.Int64 // of every message read
	moved      atomic.Int64 // of the delivered ones
	start      time.Time

	p       *mpb.Progress
	bar     *mpb.Bar
	folders map[string]*mpb.Bar // set up before the run, then only read
	w       io.Writer
	stop    chan struct{}
	wg      sync.WaitGroup
}

func newProgress(mode string, w io.Writer, sv survey) *progress {
	pr := &progress{total: sv.todo, totalBytes: sv.todoBytes, start: time.Now(), w: w, stop: make(chan struct{})}
	if mode == "auto" {
		mode = "log"
		if f, ok := w.(*os.File); ok && isTerminal(f) {
			mode = "bar"
		}
	}
	switch mode {
	case "bar":
		pr.p = mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
		pr.bar = pr.p.AddBar(max(sv.todoBytes, 1),
			mpb.PrependDecorators(
				decor.Name("all ", decor.WCSyncSpaceR),
				decor.Any(func(decor.Statistics) string {
					return fmt.Sprintf("%d/%d msgs", pr.msgs.Load(), pr.total)
				}, decor.WCSyncSpaceR),
				decor.Counters(decor.SizeB1024(0), "% .1f / % .1f", decor.WCSyncSpace),
			),
			mpb.AppendDecorators(
				decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace),
				decor.Any(func(decor.Statistics) string {
					if s := time.Since(pr.start).Seconds(); s > 0 {
						return fmt.Sprintf("%.0f msg/s", float64(pr.msgs.Load())/s)
					}
					return ""
				}, decor.WCSyncSpace),
				decor.Name(" ETA "), decor.AverageETA(decor.ET_STYLE_GO),
			),
		)
		if len(sv.folders) > 1 {
			pr.folders = map[string]*mpb.Bar{}
			for _, f := range sv.folderNames() {
				fc := sv.folders[f]
				if fc.todo.n == 0 {
					continue
				}
				pr.folders[f] = pr.p.AddBar(max(fc.todo.bytes, 1), mpb.BarRemoveOnComplete(),
					mpb.PrependDecorators(
						decor.Name(clip(f, 24), decor.WCSyncSpaceR),
						decor.Name(fmt.Sprintf("%d msgs", fc.todo.n), decor.WCSyncSpaceR),
						decor.Counters(decor.SizeB1024(0), "% .1f / % .1f", decor.WCSyncSpace),
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
					fmt.Fprintln(w, pr.line())
				}
			}
		}()
	}
	return pr
}

func (pr *progress) line() string {
	n, b := pr.msgs.Load(), pr.bytes.Load()
	el := time.Since(pr.start)
	rate := float64(n) / el.Seconds()
	eta := "?"
	if b > 0 && pr.totalBytes > b {
		eta = (time.Duration(float64(el) * float64(pr.totalBytes-b) / float64(b))).Round(time.Second).String()
	}
	return fmt.Sprintf("progress: %d/%d messages, %s/%s, %.1f msg/s, ETA %s",
		n, pr.total, humanBytes(b), humanBytes(pr.totalBytes), rate, eta)
}

// MessageDone implements engine.Observer.
func (pr *progress) MessageDone(ev engine.MessageEvent) {
	if ev.Outcome == engine.Skipped {
		return // moved on an earlier run: not in the totals
	}
	pr.msgs.Add(1)
	pr.bytes.Add(ev.Bytes)
	if ev.Outcome == engine.Delivered {
		pr.moved.Add(ev.Bytes)
	}
	if pr.bar != nil {
		pr.bar.EwmaIncrInt64(ev.Bytes, ev.Took)
	}
	if b := pr.folders[ev.Folder]; b != nil {
		b.IncrInt64(ev.Bytes)
	}
}

func (pr *progress) finish() {
	close(pr.stop)
	pr.wg.Wait()
	if pr.bar != nil {
		for _, b := range pr.folders {
			b.Abort(true)
		}
		pr.bar.SetTotal(-1, true)
		pr.p.Wait()
	} else if pr.w != nil && pr.total > 0 {
		fmt.Fprintln(pr.w, pr.line())
	}
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

var _ engine.Observer = (*progress)(nil)

// swappable passes events on to the observer set last.
type swappable struct {
	engine.NopObserver
	cur atomic.Pointer[progress]
}

func (s *swappable) set(p *progress) { s.cur.Store(p) }

func (s *swappable) MessageDone(ev engine.MessageEvent) {
	if p := s.cur.Load(); p != nil {
		p.MessageDone(ev)
	}
}
