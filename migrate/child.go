package migrate

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mailflow/mailflow/engine"
)

// A batch or a fleet's worker runs each mailbox's plan in a child process
// of its own: one that fails or dies takes nothing else with it, and each
// holds its own state directory's lock. The parent writes the plan as JSON
// on the child's standard input; the child writes one JSON object a line
// on its standard output: {"progress": …} now and then, and {"report": …}
// once at the end. Nothing else is read from it: no text is parsed, and
// the exit code says only whether a report was written.

// childLine is one line the child writes.
type childLine struct {
	Progress *Progress `json:"progress,omitempty"`
	Report   *Report   `json:"report,omitempty"`
}

// progressEvery is how often a child writes its progress.
const progressEvery = time.Second

// ServeChild is the child's side: it reads a plan from in, runs it, and
// writes its progress and report to out as JSON lines. It returns an error
// only when it could not read the plan or write the report.
func ServeChild(ctx context.Context, in io.Reader, out io.Writer, log *slog.Logger) error {
	var p Plan
	dec := json.NewDecoder(in)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("reading the plan: %w", err)
	}
	w := &childWriter{enc: json.NewEncoder(out), stop: make(chan struct{})}
	r := Run(ctx, p, Options{Log: log, Observer: w})
	w.close()
	return w.write(childLine{Report: r})
}

// childWriter writes a child's lines: progress each second once started.
type childWriter struct {
	mu    sync.Mutex // one line at a time
	enc   *json.Encoder
	stop  chan struct{}
	done  chan struct{} // closed when the progress writer ended; nil if never started
	meter *Meter
}

func (w *childWriter) write(l childLine) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.enc.Encode(l)
}

// Started implements Observer.
func (w *childWriter) Started(m *Meter) {
	w.meter, w.done = m, make(chan struct{})
	go func() {
		defer close(w.done)
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			p := m.Progress()
			w.write(childLine{Progress: &p})
			select {
			case <-t.C:
			case <-w.stop:
				p := m.Progress()
				w.write(childLine{Progress: &p})
				return
			}
		}
	}()
}

// Message implements Observer.
func (w *childWriter) Message(engine.MessageEvent) {}

// Waiting implements Observer: the parent hears at once that the run
// waits, not at the next tick.
func (w *childWriter) Waiting(string, time.Duration) {
	if w.meter != nil {
		p := w.meter.Progress()
		w.write(childLine{Progress: &p})
	}
}

func (w *childWriter) close() {
	close(w.stop)
	if w.done != nil {
		<-w.done
	}
}

// Child runs a plan in a child process.
type Child struct {
	// Command is the program and its first arguments; the child must serve
	// the plan with ServeChild (mailflow: "migrate --child").
	Command []string
	// Progress, if set, is told each progress line.
	Progress func(Progress)
}

// Run runs p in a child and returns its report. Cancelling ctx interrupts
// the child (it stops cleanly, and its report says so). The child dies
// with this process, however this process ends, so that a killed batch or
// worker leaves no migration running on behind its back (the next run
// would find the mailbox's state in use). A child that ends without a
// report gives a report with that as its error.
func (c Child) Run(ctx context.Context, p Plan) *Report {
	failed := func(err error) *Report {
		r := &Report{From: p.From.Redacted(), To: p.To.Redacted()}
		r.fail(ClassConnection, err)
		return r
	}
	plan, err := json.Marshal(p)
	if err != nil {
		return failed(err)
	}
	cmd := exec.Command(c.Command[0], c.Command[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stdin = bytes.NewReader(plan)
	var stderr tail
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return failed(err)
	}
	if err := cmd.Start(); err != nil {
		return failed(err)
	}
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			cmd.Process.Signal(os.Interrupt) // it stops cleanly, resumable
		case <-stopped:
		}
	}()
	var report *Report
	sc := bufio.NewScanner(pipe)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var l childLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			continue // not ours: a stray write; the report decides
		}
		if l.Progress != nil && c.Progress != nil {
			c.Progress(*l.Progress)
		}
		if l.Report != nil {
			report = l.Report
		}
	}
	err = cmd.Wait()
	close(stopped)
	if report == nil {
		if err == nil {
			err = errors.New("it wrote no report")
		}
		if last := stderr.last(); last != "" {
			err = fmt.Errorf("%w: %s", err, last)
		}
		return failed(fmt.Errorf("the migration's process ended: %w", err))
	}
	return report
}

// tail keeps the end of what a child wrote to its standard error, to say
// why a child that wrote no report died.
type tail struct{ b []byte }

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 8<<10 {
		t.b = t.b[len(t.b)-4<<10:]
	}
	return len(p), nil
}

func (t *tail) last() string {
	lines := strings.Split(strings.TrimSpace(string(t.b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
