package check

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"time"
)

// Report is what a check found.
type Report struct {
	Config                              string
	Inputs, Pipelines, Outputs, Scripts int
	Problems                            []Problem
	Probes                              []Probe // with Options.Connect
}

// Problem is one thing wrong, or (Warning) worth a look, and where.
type Problem struct {
	File    string
	Line    int
	Warning bool
	Msg     string
}

// Probe is one server tried with Options.Connect.
type Probe struct {
	Kind, Name, Type string
	Err              error
	Took             time.Duration
	Skipped          string // why it was not tried
}

func (r *Report) problem(file string, line int, warning bool, format string, args ...any) {
	r.Problems = append(r.Problems, Problem{File: file, Line: line, Warning: warning, Msg: fmt.Sprintf(format, args...)})
}

// sort orders the problems by file and line, the config's own first; a
// problem of a whole file (line 0) after those with a line.
func (r *Report) sort() {
	slices.SortStableFunc(r.Problems, func(a, b Problem) int {
		if a.File != b.File {
			if a.File == r.Config {
				return -1
			}
			if b.File == r.Config {
				return 1
			}
			return cmp.Compare(a.File, b.File)
		}
		la, lb := a.Line, b.Line
		if la == 0 {
			la = 1 << 30
		}
		if lb == 0 {
			lb = 1 << 30
		}
		return cmp.Compare(la, lb)
	})
}

// Errors counts the problems that would stop "run" or lose its way;
// warnings are not among them.
func (r *Report) Errors() int {
	n := 0
	for _, p := range r.Problems {
		if !p.Warning {
			n++
		}
	}
	for _, p := range r.Probes {
		if p.Err != nil {
			n++
		}
	}
	return n
}

// WriteText writes the report as "mailflow check" prints it: a line per
// problem, "file:line: message" (warnings say so), a line per server
// tried, and a last line that sums up.
func (r *Report) WriteText(w io.Writer) {
	warnings := 0
	for _, p := range r.Problems {
		place := p.File
		if p.Line > 0 {
			place = fmt.Sprintf("%s:%d", p.File, p.Line)
		}
		kind := ""
		if p.Warning {
			kind, warnings = "warning: ", warnings+1
		}
		fmt.Fprintf(w, "%s: %s%s\n", place, kind, p.Msg)
	}
	for _, p := range r.Probes {
		what := fmt.Sprintf("%s %q (%s)", p.Kind, p.Name, p.Type)
		switch {
		case p.Skipped != "":
			fmt.Fprintf(w, "%s: not tried: %s\n", what, p.Skipped)
		case p.Err != nil:
			fmt.Fprintf(w, "%s: FAILED: %v\n", what, p.Err)
		default:
			fmt.Fprintf(w, "%s: connected, logged in and out in %s\n", what, p.Took.Round(time.Millisecond))
		}
	}
	switch n := r.Errors(); {
	case n > 0:
		fmt.Fprintf(w, "%s: %d %s, %d %s\n", r.Config, n, plural(n, "problem"), warnings, plural(warnings, "warning"))
	default:
		fmt.Fprintf(w, "%s: ok (%d inputs, %d pipelines, %d outputs, %d scripts)", r.Config, r.Inputs, r.Pipelines, r.Outputs, r.Scripts)
		if warnings > 0 {
			fmt.Fprintf(w, ", %d %s", warnings, plural(warnings, "warning"))
		}
		fmt.Fprintln(w)
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
