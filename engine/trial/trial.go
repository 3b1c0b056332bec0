// Package trial runs a pipeline's filter chain on saved messages and says
// what it would do with each — the verdict, where it would go, what
// changed in it, what it would generate — sending nothing and changing
// nothing ("mailflow test"). It is the chain of engine.Setup run the way a
// poll runs it, without outputs, ledger or source.
package trial

import (
	"context"
	"io"
	"io/fs"
	"mime/quotedprintable"
	"os"
	"path/filepath"
	"sort"
	"strings"

	gomessage "github.com/emersion/go-message"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
)

// Result is what the chain would do with one message.
type Result struct {
	Path      string
	Err       error // the message could not be read, or a script broke (then it would be quarantined)
	HeaderErr error // its header could not be parsed: it flows on untouched

	Verdict string // keep, route, redirect, drop, quarantine, leave
	By      string // the script that decided (or broke)
	Reason  string
	// Outputs it would go to: the verdict's, or the pipeline's own
	// (defaults; nil when the trial has no pipeline).
	Outputs    []string
	Recipients []string // the envelope recipients, when a script set them
	Sender     string   // the envelope sender, when a script changed it
	Generated  []Generated
	Header     []string // the header's changed lines: "- " removed, "+ " added
	// Body is set when a script changed the body: each part's type, and
	// the last lines of each text part as a reader sees them.
	Body *Body
}

// Body is a changed body, described.
type Body struct {
	Before, After int64 // sizes
	Parts         []Part
	Unreadable    error
}

// Part is one leaf of a changed body.
type Part struct {
	Type string
	Tail []string // the last lines of a text part
}

// Generated is a message a script made (vacation{}, notify{}).
type Generated struct {
	Name, Output string
	Sender       string
	Recipients   []string
	Header       []string // its fields, without Date (so that output compares from one day to the next)
	Body         []string // its text, decoded
}

// Acts reports whether the verdict sends the message on (keep, route,
// redirect).
func (r *Result) Acts() bool {
	return r.Verdict == "keep" || r.Verdict == "route" || r.Verdict == "redirect"
}

// Run runs chain on the message in the file at path. defaults are the
// pipeline's outputs (nil for a chain of loose scripts).
func Run(chain *engine.Chain, path string, defaults []string) *Result {
	r := &Result{Path: path}
	f, err := os.Open(path)
	if err != nil {
		r.Err = err
		return r
	}
	msg, err := message.Read(f, message.Source{Input: "test", ID: filepath.Base(path)}, message.DefaultSpool)
	f.Close()
	if err != nil {
		r.Err = err
		return r
	}
	defer msg.Close()
	r.HeaderErr = msg.HeaderErr
	before, sender, sizeBefore := FieldLines(msg.Header), msg.Envelope.Sender, msg.Size()

	v, by, err := chain.Run(context.Background(), msg)
	r.By = by
	if err != nil {
		r.Err, r.Verdict = err, "quarantine"
		return r
	}
	r.Verdict, r.Reason = v.Action.String(), v.Reason
	switch {
	case v.Action != plugin.ActionKeep:
	case v.Outputs != nil:
		r.Verdict = "route"
	case len(msg.Envelope.Recipients) > 0:
		r.Verdict = "redirect"
	}
	r.Outputs = defaults
	if v.Outputs != nil {
		r.Outputs = v.Outputs
	}
	r.Recipients = msg.Envelope.Recipients
	if msg.Envelope.Sender != sender {
		r.Sender = msg.Envelope.Sender
	}
	for _, g := range v.Generated {
		r.Generated = append(r.Generated, generated(g))
	}
	if msg.BodyChanged() {
		r.Body = body(msg, sizeBefore)
	}
	r.Header = DiffLines(before, FieldLines(msg.Header))
	return r
}

func generated(g plugin.Generated) Generated {
	m := g.Message
	out := Generated{Name: g.Name, Output: g.Output, Sender: m.Envelope.Sender, Recipients: m.Envelope.Recipients}
	for _, line := range FieldLines(m.Header) {
		if !strings.HasPrefix(line, "Date:") {
			out.Header = append(out.Header, line)
		}
	}
	text, err := io.ReadAll(quotedprintable.NewReader(m.Body()))
	if err != nil {
		text, _ = io.ReadAll(m.Body())
	}
	out.Body = textLines(string(text))
	return out
}

func body(msg *message.Message, before int64) *Body {
	b := &Body{Before: before, After: msg.Size()}
	ent, err := gomessage.Read(msg.Reader())
	if ent == nil {
		b.Unreadable = err
		return b
	}
	ent.Walk(func(_ []int, part *gomessage.Entity, _ error) error {
		t, _, _ := part.Header.ContentType()
		if strings.HasPrefix(t, "multipart/") {
			return nil
		}
		p := Part{Type: t}
		if strings.HasPrefix(t, "text/") {
			text, _ := io.ReadAll(io.LimitReader(part.Body, 1<<20))
			lines := textLines(string(text))
			p.Tail = lines[max(0, len(lines)-3):]
		}
		b.Parts = append(b.Parts, p)
		return nil
	})
	return b
}

func textLines(s string) []string {
	return strings.Split(strings.TrimRight(strings.ReplaceAll(s, "\r\n", "\n"), "\n"), "\n")
}

// Files expands directories into the regular files under them (a Maildir
// works), in order; files are taken as they are.
func Files(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, a)
			continue
		}
		var found []string
		err = filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() && !strings.HasPrefix(d.Name(), ".") {
				found = append(found, p)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		sort.Strings(found)
		out = append(out, found...)
	}
	return out, nil
}

// FieldLines renders each header field as one line, as it would be
// written, continuation lines indented under it.
func FieldLines(h message.Header) []string {
	out := h.Lines()
	for i, s := range out {
		out[i] = strings.NewReplacer("\r\n", "\n     ", "\n", "\n     ", "\r", "\n     ").Replace(s)
	}
	return out
}
