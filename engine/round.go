package engine

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Round is one poll of every input (PollAll, "run --once"): what each
// did, and the error each poll that failed ended with.
type Round struct {
	Stats map[string]Stats
	Errs  map[string]error
}

// Err joins the failed polls' errors, nil when none failed.
func (r Round) Err() error {
	var errs []error
	for _, name := range r.names() {
		if err := r.Errs[name]; err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// WriteText writes a line per input, as "run --once" prints them:
// "inbox: fetched=4 delivered=4 …", or for an input whose poll failed
// "inbox: FAILED: the reason", with what it did before it failed.
func (r Round) WriteText(w io.Writer) {
	for _, name := range r.names() {
		st := r.Stats[name]
		err := r.Errs[name]
		switch {
		case err == nil:
			fmt.Fprintf(w, "%s: %s\n", name, st)
		case st == Stats{}:
			fmt.Fprintf(w, "%s: FAILED: %s\n", name, reason(name, err))
		default:
			fmt.Fprintf(w, "%s: FAILED: %s (before that: %s)\n", name, reason(name, err), st)
		}
	}
}

// reason is a poll's error without the input's name, which the line
// starts with already.
func reason(name string, err error) string {
	return strings.TrimPrefix(err.Error(), fmt.Sprintf("input %q: ", name))
}

func (r Round) names() []string {
	names := make([]string, 0, len(r.Stats))
	for n := range r.Stats {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
