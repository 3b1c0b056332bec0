// Package batch migrates many mailboxes on this machine: each is one
// migrate.Plan (a row of a CSV file), run in a child process of its own
// (migrate.Child) so that one that fails or dies takes nothing else with
// it. Rows run Parallel at once, at most PerHost on one server (servers
// throttle); a failed one is retried with back-off when its error's class
// says a retry may help, then reported while the others go on.
package batch

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailflow/mailflow/migrate"
)

// Job is one mailbox of a batch, and how it stands.
type Job struct {
	Row  int    // its line in the CSV file
	Name string // the source, without secrets
	Plan migrate.Plan

	State    State
	Tries    int
	Progress migrate.Progress // the last the child told
	Report   *migrate.Report  // the last try's
	Took     time.Duration    // over all tries
	next     time.Time        // when a retry may start
}

// State is where a job stands.
type State string

const (
	Waiting  State = "waiting"
	Running  State = "running"
	Retrying State = "retrying" // failed, and waits to be tried again
	Done     State = "done"
	Failed   State = "failed"
)

// Error is the job's last error, as shown ("" when it went through).
func (j *Job) Error() string {
	if j.Report == nil || len(j.Report.Errors) == 0 {
		if j.Report != nil && j.Report.Result() == migrate.DoneQuarantined {
			return "some messages quarantined"
		}
		return ""
	}
	return j.Report.Errors[0].Message
}

// columns maps the CSV's columns to what they set in a plan.
var columns = map[string]func(p *migrate.Plan, v string) error{
	"from":             func(p *migrate.Plan, v string) error { p.From.URL = v; return nil },
	"to":               func(p *migrate.Plan, v string) error { p.To.URL = v; return nil },
	"rcpt":             func(p *migrate.Plan, v string) error { p.Rcpt = v; return nil },
	"password_env":     func(p *migrate.Plan, v string) error { p.From.PasswordEnv = v; return nil },
	"password_file":    func(p *migrate.Plan, v string) error { p.From.PasswordFile = v; return nil },
	"to_password_env":  func(p *migrate.Plan, v string) error { p.To.PasswordEnv = v; return nil },
	"to_password_file": func(p *migrate.Plan, v string) error { p.To.PasswordFile = v; return nil },
	"folders":          func(p *migrate.Plan, v string) error { p.Folders = migrate.ParseList(v); return nil },
	"folder_map": func(p *migrate.Plan, v string) (err error) {
		p.FolderMap, err = migrate.ParseFolderMap(v)
		return err
	},
	"since": func(p *migrate.Plan, v string) (err error) {
		p.Since, err = migrate.ParseSince(v)
		return err
	},
	"max_bytes_per_second": func(p *migrate.Plan, v string) (err error) {
		p.MaxBytesPerSecond, err = strconv.ParseInt(v, 10, 64)
		return err
	},
	"max_bytes_per_day": func(p *migrate.Plan, v string) (err error) {
		p.MaxBytesPerDay, err = strconv.ParseInt(v, 10, 64)
		return err
	},
	"gmail": func(p *migrate.Plan, v string) error {
		b, err := strconv.ParseBool(v)
		p.Gmail = &b
		return err
	},
	"labels":               func(p *migrate.Plan, v string) error { p.Labels = v; return nil },
	"include_spam_trash":   boolColumn(func(p *migrate.Plan) *bool { return &p.IncludeSpamTrash }),
	"sync_deletes":         boolColumn(func(p *migrate.Plan) *bool { return &p.SyncDeletes }),
	"rate":                 func(p *migrate.Plan, v string) error { p.Rate = v; return nil },
	"ca_file":              func(p *migrate.Plan, v string) error { p.CAFile = v; return nil },
	"keep":                 boolColumn(func(p *migrate.Plan) *bool { return &p.Keep }),
	"add_message_id":       boolColumn(func(p *migrate.Plan) *bool { return &p.AddMessageID }),
	"allow_plaintext_auth": boolColumn(func(p *migrate.Plan) *bool { return &p.AllowPlaintextAuth }),
}

func boolColumn(field func(p *migrate.Plan) *bool) func(p *migrate.Plan, v string) error {
	return func(p *migrate.Plan, v string) (err error) {
		*field(p), err = strconv.ParseBool(v)
		return err
	}
}

// Columns lists the CSV's columns, for help.
func Columns() []string {
	var names []string
	for c := range columns {
		names = append(names, c)
	}
	slices.Sort(names)
	return names
}

// Read reads a batch file: a header row naming columns, then a row per
// mailbox. Secrets are given by the name of an environment variable or a
// file; a password column is refused.
func Read(file string) ([]*Job, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cr := csv.NewReader(f)
	cr.Comment = '#'
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: no header row: %v", file, err)
	}
	for i, h := range header {
		header[i] = strings.ToLower(strings.TrimSpace(h))
		switch {
		case header[i] == "password" || header[i] == "to_password":
			return nil, fmt.Errorf("%s: column %q: give passwords by environment variable or file (password_env, password_file), never in the CSV", file, h)
		case columns[header[i]] == nil:
			return nil, fmt.Errorf("%s: unknown column %q; known: %s", file, h, strings.Join(Columns(), ", "))
		}
	}
	var jobs []*Job
	for row := 2; ; row++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", file, err)
		}
		j := &Job{Row: row, State: Waiting}
		for i, v := range rec {
			if v = strings.TrimSpace(v); i >= len(header) || v == "" {
				continue
			}
			if err := columns[header[i]](&j.Plan, v); err != nil {
				return nil, fmt.Errorf("%s:%d: %s: %v", file, row, header[i], err)
			}
		}
		for _, ep := range []migrate.Endpoint{j.Plan.From, j.Plan.To} {
			u, err := url.Parse(ep.URL)
			switch {
			case ep.URL == "":
				return nil, fmt.Errorf("%s:%d: from and to are required", file, row)
			case err != nil || u.Host == "":
				return nil, fmt.Errorf("%s:%d: %q is not a URL", file, row, ep.URL)
			case u.User != nil:
				if _, has := u.User.Password(); has {
					return nil, fmt.Errorf("%s:%d: a URL has a password in it; use password_env or password_file", file, row)
				}
			}
		}
		j.Name = j.Plan.From.Redacted()
		jobs = append(jobs, j)
	}
	if len(jobs) == 0 {
		return nil, fmt.Errorf("%s has no mailbox rows", file)
	}
	return jobs, nil
}

// Runner runs a batch's jobs.
type Runner struct {
	Child     migrate.Child // how a mailbox is run (its Progress is set per job)
	StateDir  string        // each mailbox's record goes in a directory of its own below it
	Parallel  int           // mailboxes at once
	PerHost   int           // mailboxes at once on one server (source or destination)
	Retries   int           // tries of a failing mailbox
	RetryWait time.Duration // before the first retry, doubling after each
	// Changed, if set, is told when a job changes state, with r's lock
	// held: it must not call back into r.
	Changed func(j *Job)

	mu      sync.Mutex
	running map[string]int // per host
	active  int
}

// Run starts jobs while slots allow until every job is done or failed, or
// ctx ends (then the running ones stop cleanly and are failed as
// interrupted).
func (r *Runner) Run(ctx context.Context, jobs []*Job) {
	r.running = map[string]int{}
	r.Parallel, r.PerHost, r.Retries = max(1, r.Parallel), max(1, r.PerHost), max(1, r.Retries)
	for _, j := range jobs {
		if j.Plan.StateDir == "" {
			j.Plan.StateDir = filepath.Join(r.StateDir, "box-"+j.Plan.Key())
		}
	}
	var wg sync.WaitGroup
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		r.mu.Lock()
		left := 0
		for _, j := range jobs {
			if j.State != Done && j.State != Failed {
				left++
			}
			if ctx.Err() == nil && r.active < r.Parallel && (j.State == Waiting || j.State == Retrying) && !time.Now().Before(j.next) && r.hostsFree(j) {
				r.start(ctx, j, &wg)
			}
		}
		active := r.active
		r.mu.Unlock()
		if left == 0 || ctx.Err() != nil && active == 0 {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	wg.Wait()
}

func (r *Runner) hostsFree(j *Job) bool {
	for _, h := range uniqueHosts(j) {
		if r.running[h] >= r.PerHost {
			return false
		}
	}
	return true
}

// uniqueHosts are the job's servers, from and to on one server counting once.
func uniqueHosts(j *Job) []string {
	hosts := j.Plan.Hosts()
	slices.Sort(hosts)
	return slices.Compact(hosts)
}

// start runs one try of j in a child. r.mu is held.
func (r *Runner) start(ctx context.Context, j *Job, wg *sync.WaitGroup) {
	j.State, j.Tries = Running, j.Tries+1
	r.active++
	hosts := uniqueHosts(j)
	for _, h := range hosts {
		r.running[h]++
	}
	r.changed(j)
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		child := r.Child
		child.Progress = func(p migrate.Progress) {
			r.mu.Lock()
			j.Progress = p
			r.mu.Unlock()
		}
		rep := child.Run(ctx, j.Plan)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.active--
		for _, h := range hosts {
			r.running[h]--
		}
		j.Took += time.Since(start)
		j.Report = rep
		switch {
		case rep.Result() != migrate.Failed:
			j.State = Done
		case ctx.Err() != nil || rep.Class() == migrate.ClassInterrupted:
			j.State = Failed
			rep.Errors = append([]migrate.Failure{{Class: migrate.ClassInterrupted, Message: "interrupted: run the batch again to go on"}}, rep.Errors...)
		case !rep.Class().Retry() || j.Tries >= r.Retries:
			j.State = Failed
		default:
			j.State, j.next = Retrying, time.Now().Add(r.RetryWait<<(j.Tries-1))
		}
		r.changed(j)
	}()
}

func (r *Runner) changed(j *Job) {
	if r.Changed != nil {
		r.Changed(j)
	}
}

// RetryIn is how long until a retrying job is tried again.
func (j *Job) RetryIn() time.Duration { return time.Until(j.next).Round(time.Second) }

// WriteReport writes the jobs' outcome as CSV: row, mailbox, state, tries,
// moved, verified, seconds, result, error.
func WriteReport(path string, jobs []*Job) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	cw := csv.NewWriter(f)
	cw.Write([]string{"row", "mailbox", "state", "tries", "moved", "verified", "seconds", "result", "error"})
	for _, j := range jobs {
		moved, verified, result := "", "", ""
		if j.Report != nil {
			moved, verified, result = strconv.FormatInt(j.Report.Moved, 10), j.Report.Verified(), j.Report.Result().String()
		}
		cw.Write([]string{strconv.Itoa(j.Row), j.Name, string(j.State), strconv.Itoa(j.Tries), moved,
			verified, strconv.FormatFloat(j.Took.Seconds(), 'f', 1, 64), result, j.Error()})
	}
	cw.Flush()
	return errors.Join(cw.Error(), f.Close())
}

// Each calls fn with each of jobs while the runner holds still, so that
// what fn reads is one moment's.
func (r *Runner) Each(jobs []*Job, fn func(*Job)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, j := range jobs {
		fn(j)
	}
}
