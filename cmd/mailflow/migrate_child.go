package main

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// A batch (local or a queue worker) runs each mailbox as `mailflow migrate`
// in a child process of its own: one that fails or dies takes nothing else
// with it, and it is exactly the single-mailbox migrate a user would run.

// childResult is what one run of a child migrate said.
type childResult struct {
	code     int
	report   string // its stdout: the final report
	errText  string // the last error line it printed
	moved    string // "moved:" from the report
	verified string // yes, no, or n/a (an SMTP destination cannot be searched)
}

var (
	progressLine = regexp.MustCompile(`progress: (\d+)/(\d+) messages, .*?, ([\d.]+) msg/s`)
	movedLine    = regexp.MustCompile(`(?m)^moved:\s+(\d+)`)
)

// runMigrateChild runs `self args...` and calls progress with what its
// progress lines say. Cancelling ctx interrupts it (it stops cleanly and
// resumes next time); it dies with this process, however this process
// ends, so that a killed batch or worker leaves no migrate running on
// behind its back (the next run would find the mailbox's state in use).
func runMigrateChild(ctx context.Context, self string, args []string, progress func(done, total int64, rate float64)) childResult {
	cmd := exec.Command(self, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var report strings.Builder
	cmd.Stdout = &report
	pipe, err := cmd.StderrPipe()
	if err != nil {
		return childResult{code: exitFailed, errText: err.Error()}
	}
	if err := cmd.Start(); err != nil {
		return childResult{code: exitFailed, errText: err.Error()}
	}
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			cmd.Process.Signal(os.Interrupt) // it stops cleanly, resumable
		case <-stopped:
		}
	}()
	last := ""
	sc := bufio.NewScanner(pipe)
	for sc.Scan() {
		line := sc.Text()
		if m := progressLine.FindStringSubmatch(line); m != nil {
			done, _ := strconv.ParseInt(m[1], 10, 64)
			total, _ := strconv.ParseInt(m[2], 10, 64)
			rate, _ := strconv.ParseFloat(m[3], 64)
			if progress != nil {
				progress(done, total, rate)
			}
			continue
		}
		if strings.Contains(line, "mailflow") || strings.Contains(line, "level=ERROR") || strings.Contains(line, "err=") {
			last = oneLine(line)
		}
	}
	err = cmd.Wait()
	close(stopped)
	res := childResult{report: report.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		res.code = ee.ExitCode()
	} else if err != nil {
		res.code, last = exitFailed, err.Error()
	}
	if last == "" && res.code != 0 {
		lines := strings.Split(strings.TrimSpace(res.report), "\n")
		last = lines[len(lines)-1]
	}
	res.errText = last
	if m := movedLine.FindStringSubmatch(res.report); m != nil {
		res.moved = m[1]
	}
	// Into IMAP each migrate ends with a verification, folder by folder.
	switch {
	case !strings.Contains(res.report, "verification"):
		res.verified = "n/a"
	case strings.Contains(res.report, "missing in ") || strings.Contains(res.report, "verification of "):
		res.verified = "no"
	default:
		res.verified = "yes"
	}
	return res
}
