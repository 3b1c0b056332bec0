package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

type queueOptions struct {
	name      string
	ackWait   time.Duration
	replicas  int
	retries   int
	retryWait time.Duration
	wait      bool
}

// queueBatch puts a batch's mailboxes in the fleet's queue.
func queueBatch(file string, jobs []*batchJob, q *queueFlags, o queueOptions, stdout, stderr io.Writer) int {
	ctx, stop := stopOnSignal(slog.New(slog.NewTextHandler(stderr, nil)), time.Minute)
	defer stop()
	nc, js, err := q.connect(ctx, "mailflow migrate --batch", 30*time.Second)
	if err != nil {
		fmt.Fprintln(stderr, "mailflow migrate --batch:", err)
		return exitFailed
	}
	defer nc.Close()
	kv, err := setUpQueue(ctx, nc, js, o.replicas, o.ackWait)
	if err != nil {
		fmt.Fprintln(stderr, "mailflow migrate --batch:", err)
		return exitFailed
	}
	var qjobs []queueJob
	for _, j := range jobs {
		qjobs = append(qjobs, queueJob{Batch: o.name, Key: jobKey(o.name, j.args), Row: j.row, Mailbox: j.name,
			Args: j.args, Hosts: j.hosts, Retries: o.retries, RetryWait: o.retryWait})
	}
	added, already, err := publishBatch(ctx, js, kv, qjobs)
	fmt.Fprintf(stdout, "batch %s (%s): %d mailboxes queued, %d already in the queue\n", o.name, file, added, already)
	if err != nil {
		fmt.Fprintln(stderr, "mailflow migrate --batch:", err)
		return exitFailed
	}
	if !o.wait {
		fmt.Fprintf(stdout, "workers take them (mailflow worker --queue %s); see where they stand with\n  mailflow migrate status --queue %s --name %s\n", q.url, q.url, o.name)
		return exitOK
	}
	return followStatus(ctx, kv, o.name, stdout, stderr)
}

const statusHelp = `Usage: mailflow migrate status --queue nats://HOST:4222 [--name BATCH] [--wait] [--report FILE.csv]

Shows where every mailbox of the fleet's batches stands (from the NATS
JetStream bucket the workers write): state, the worker that has or finished
it, messages done/total, verification and the last error. Exits 1 if any
mailbox failed, 4 if some are still queued or running, 0 when all are done.
`

func cmdMigrateStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("migrate status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var q queueFlags
	q.register(fs)
	name := fs.String("name", "", "only this batch")
	wait := fs.Bool("wait", false, "redraw until every mailbox is done or failed")
	report := fs.String("report", "", "also write the table as CSV to `FILE`")
	if code, ok := parseQueueCommand(fs, &q, args, "migrate status", statusHelp, stderr); !ok {
		return code
	}
	ctx, stop := stopOnSignal(slog.New(slog.NewTextHandler(stderr, nil)), time.Minute)
	defer stop()
	nc, js, err := q.connect(ctx, "mailflow migrate status", 30*time.Second)
	if err != nil {
		fmt.Fprintln(stderr, "mailflow migrate status:", err)
		return exitFailed
	}
	defer nc.Close()
	var kv jetstream.KeyValue
	if err := retry(ctx, func(ctx context.Context) (err error) { kv, err = js.KeyValue(ctx, queueBucket); return err }); err != nil {
		fmt.Fprintln(stderr, "mailflow migrate status: no batch was queued here:", err)
		return exitFailed
	}
	if *wait {
		code := followStatus(ctx, kv, *name, stdout, stderr)
		if *report != "" {
			if all, err := readStatuses(ctx, kv, *name); err == nil {
				writeStatusReport(*report, all)
			}
		}
		return code
	}
	all, err := readStatuses(ctx, kv, *name)
	if err != nil {
		fmt.Fprintln(stderr, "mailflow migrate status:", err)
		return exitFailed
	}
	code := printStatuses(stdout, all)
	if *report != "" {
		if err := writeStatusReport(*report, all); err != nil {
			fmt.Fprintln(stderr, "mailflow migrate status: report:", err)
		}
	}
	return code
}

// followStatus redraws the table every few seconds until nothing is left
// to run, then prints it a last time.
func followStatus(ctx context.Context, kv jetstream.KeyValue, name string, stdout, stderr io.Writer) int {
	table := isTerminal(stderrFile(stderr))
	last := map[string]string{}
	for {
		all, err := readStatuses(ctx, kv, name)
		if err != nil && ctx.Err() == nil {
			fmt.Fprintln(stderr, "mailflow migrate status:", err)
		}
		open := 0
		for _, st := range all {
			if st.State != "done" && st.State != "failed" {
				open++
			}
		}
		if table {
			var b strings.Builder
			b.WriteString("\x1b[H\x1b[2J")
			printStatuses(&b, all)
			io.WriteString(stderr, b.String())
		} else {
			for key, st := range all {
				line := fmt.Sprintf("%s %s %d/%d", st.State, st.Worker, st.Done, st.Total)
				if last[key] != line {
					last[key] = line
					fmt.Fprintf(stderr, "%s  %s: %s (%s) %d/%d %s\n", time.Now().Format("15:04:05"), st.Mailbox, st.State, st.Worker, st.Done, st.Total, st.Error)
				}
			}
		}
		if err == nil && len(all) > 0 && open == 0 || ctx.Err() != nil {
			return printStatuses(stdout, all)
		}
		select {
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
		}
	}
}

// readStatuses reads every mailbox's entry (of one batch, if name is set).
func readStatuses(ctx context.Context, kv jetstream.KeyValue, name string) (map[string]jobStatus, error) {
	var keys []string
	err := retry(ctx, func(ctx context.Context) (err error) {
		keys, err = kv.Keys(ctx)
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			keys, err = nil, nil
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	all := map[string]jobStatus{}
	for _, k := range keys {
		if name != "" && !strings.HasPrefix(k, name+".") {
			continue
		}
		var e jetstream.KeyValueEntry
		if err := retry(ctx, func(ctx context.Context) (err error) { e, err = kv.Get(ctx, k); return err }); err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			return all, err
		}
		var st jobStatus
		if json.Unmarshal(e.Value(), &st) == nil {
			all[k] = st
		}
	}
	return all, nil
}

// printStatuses prints the table and the counts, and returns the exit
// code they make.
func printStatuses(w io.Writer, all map[string]jobStatus) int {
	rows := sortedStatuses(all)
	fmt.Fprintf(w, "%-12s %-40s %-9s %-20s %5s %13s %8s %8s  %s\n", "BATCH", "MAILBOX", "STATE", "WORKER", "TRIES", "MESSAGES", "MOVED", "VERIFIED", "ERROR")
	count := map[string]int{}
	for _, st := range rows {
		count[st.State]++
		fmt.Fprintf(w, "%-12s %-40s %-9s %-20s %5d %13s %8s %8s  %s\n", clip(st.Batch, 12), clip(st.Mailbox, 40), st.State,
			clip(st.Worker, 20), st.Tries, fmt.Sprintf("%d/%d", st.Done, st.Total), st.Moved, st.Verified, clip(st.Error, 60))
	}
	fmt.Fprintf(w, "\n%d mailboxes: %d done, %d failed, %d running, %d queued, %d retrying\n", len(rows),
		count["done"], count["failed"], count["running"], count["queued"], count["retrying"])
	switch {
	case count["failed"] > 0:
		return exitFailed
	case count["done"] < len(rows):
		return exitPending
	}
	return exitOK
}

// exitPending: migrate status found mailboxes still queued or running.
const exitPending = 4

func sortedStatuses(all map[string]jobStatus) []jobStatus {
	rows := make([]jobStatus, 0, len(all))
	for _, st := range all {
		rows = append(rows, st)
	}
	sort.Slice(rows, func(a, b int) bool {
		if rows[a].Batch != rows[b].Batch {
			return rows[a].Batch < rows[b].Batch
		}
		return rows[a].Row < rows[b].Row
	})
	return rows
}

func writeStatusReport(path string, all map[string]jobStatus) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	cw := csv.NewWriter(f)
	cw.Write([]string{"batch", "row", "mailbox", "state", "worker", "tries", "done", "total", "moved", "verified", "seconds", "exit", "error"})
	for _, st := range sortedStatuses(all) {
		cw.Write([]string{st.Batch, strconv.Itoa(st.Row), st.Mailbox, st.State, st.Worker, strconv.Itoa(st.Tries),
			strconv.FormatInt(st.Done, 10), strconv.FormatInt(st.Total, 10), st.Moved, st.Verified,
			strconv.FormatFloat(st.Seconds, 'f', 1, 64), strconv.Itoa(st.Exit), st.Error})
	}
	cw.Flush()
	return errors.Join(cw.Error(), f.Close())
}
