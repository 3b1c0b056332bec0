package migrate

import (
	"context"
	"errors"
	"time"

	"github.com/mailflow/mailflow/migrate/survey"
)

// Report is what a run did. It is plain data (JSON), so that a batch's
// child process can hand it to its parent and a fleet's worker to the
// status bucket; the command line prints it.
type Report struct {
	From     string    `json:"from,omitempty"` // the source, without secrets
	To       string    `json:"to,omitempty"`
	StateDir string    `json:"state_dir"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`

	// Surveyed is what the source held before the run.
	Surveyed Totals `json:"surveyed"`

	Moved      int64 `json:"moved"`       // copied by this run
	MovedBytes int64 `json:"moved_bytes"` // the size of what was settled this run
	// AlreadyMoved were moved by an earlier run (the record says so);
	// AlreadyThere were found at the destination already by this run and
	// not copied again (a run with a fresh state, another machine's).
	AlreadyMoved int64 `json:"already_moved"`
	AlreadyThere int64 `json:"already_there"`
	// FlagsUpdated are messages moved earlier whose flags changed at the
	// source since: the change was carried to the destination.
	FlagsUpdated int64 `json:"flags_updated"`
	// DeletedThere are messages moved earlier and deleted at the source
	// since, deleted at the destination too (--sync-deletes).
	DeletedThere int64 `json:"deleted_there,omitempty"`
	Left         int64 `json:"left"`      // dated before --since: they stay
	TooLarge     int64 `json:"too_large"` // over max_message_size: they stay
	Deferred     int64 `json:"deferred"`  // still at the source, to be retried
	Held         int64 `json:"held"`      // their bytes never matched the source's size
	// InDoubt were being delivered when an earlier run was stopped hard,
	// or lost their answer: they were delivered again.
	InDoubt int64 `json:"in_doubt"`
	// Refused were refused by the destination or quarantined by a filter.
	Refused []Refusal `json:"refused,omitempty"`
	// RefusedFolders are source folders whose messages the destination
	// would not take where they were to go (it refused to create the
	// folder): they stay at the source, not counted Deferred, and only a
	// change of the plan (--folder-map) or of the destination moves them.
	RefusedFolders []RefusedFolder `json:"refused_folders,omitempty"`
	// Verifications compare the source with the destination, folder by
	// folder; none where the destination cannot be searched (SMTP,
	// Gmail), which Unverified says, and why.
	Verifications []Verification `json:"verifications,omitempty"`
	Unverified    []Unverified   `json:"unverified,omitempty"`
	// SourceDeleted is how many messages --delete-source removed at the
	// source; SourceMovedFirst of them arrived during the run and were
	// moved first.
	SourceDeleted    int64     `json:"source_deleted,omitempty"`
	SourceMovedFirst int64     `json:"source_moved_first,omitempty"`
	Errors           []Failure `json:"errors,omitempty"`
}

// Refusal is a message that went to the quarantine.
type Refusal struct {
	SourceID     string `json:"source_id"`
	MessageID    string `json:"message_id,omitempty"`
	Reason       string `json:"reason"`
	QuarantineID string `json:"quarantine_id"`
}

// RefusedFolder is a source folder the destination refused a place for.
type RefusedFolder struct {
	Folder string `json:"folder"` // the source's name
	Reason string `json:"reason"` // the destination's answer
	// Messages (and their Bytes) are what stays at the source for it.
	Messages int64 `json:"messages"`
	Bytes    int64 `json:"bytes"`
}

// Verification is what the closing check found.
type Verification struct {
	Input   string               `json:"input"`
	Output  string               `json:"output"`
	Folders []survey.FolderCheck `json:"folders"`
	Missing int                  `json:"missing"`
	// FlagsDiffer counts messages found with other flags than at the
	// source (a change made at the destination).
	FlagsDiffer int    `json:"flags_differ,omitempty"`
	Error       string `json:"error,omitempty"` // the check itself failed
}

// Unverified is a source and destination that were not compared.
type Unverified struct {
	Input  string `json:"input"`
	Output string `json:"output"`
	Why    string `json:"why"`
}

// Failure is an error of the run, with its class.
type Failure struct {
	Class   Class  `json:"class"`
	Message string `json:"message"`
}

// Class says what an error means for trying again.
type Class string

const (
	// ClassPlan: the plan cannot run as written (a mistake in it, a
	// missing secret, its state in use by another run, a folder the
	// destination refuses): running it again unchanged cannot help.
	ClassPlan Class = "plan"
	// ClassConnection: a server could not be reached, refused the login,
	// or a session broke. It may work later.
	ClassConnection Class = "connection"
	// ClassIncomplete: messages stay at the source to be retried, or the
	// verification found some missing. Running again goes on.
	ClassIncomplete Class = "incomplete"
	// ClassInterrupted: the run was stopped (a signal). Running again
	// resumes where it stopped.
	ClassInterrupted Class = "interrupted"
)

// Retry reports whether trying again unchanged may succeed where a run
// failed with this class, without a person doing anything.
func (c Class) Retry() bool { return c == ClassConnection || c == ClassIncomplete }

func (r *Report) fail(class Class, err error) {
	if errors.Is(err, context.Canceled) {
		class = ClassInterrupted
	}
	r.Errors = append(r.Errors, Failure{Class: class, Message: err.Error()})
}

// Result sums a report up.
type Result int

const (
	// Done: everything the plan asks for is at the destination.
	Done Result = iota
	// DoneQuarantined: everything was dealt with, but some messages were
	// refused or held: a person should look (mailflow quarantine list).
	DoneQuarantined
	// Failed: something stays to be done (see Errors).
	Failed
)

func (r Result) String() string { return [...]string{"done", "quarantined", "failed"}[r] }

// Result is how the run ended.
func (r *Report) Result() Result {
	switch {
	case len(r.Errors) > 0:
		return Failed
	case len(r.Refused) > 0 || r.Held > 0:
		return DoneQuarantined
	}
	return Done
}

// Class is the class of the run's first error, or "" when it had none:
// what a batch decides a retry by.
func (r *Report) Class() Class {
	if len(r.Errors) == 0 {
		return ""
	}
	return r.Errors[0].Class
}

// Verified says whether the verification found everything: "yes", "no",
// or "n/a" where the destination cannot be searched.
func (r *Report) Verified() string {
	if len(r.Verifications) == 0 {
		return "n/a"
	}
	for _, v := range r.Verifications {
		if v.Missing > 0 || v.FlagsDiffer > 0 || v.Error != "" {
			return "no"
		}
	}
	return "yes"
}
