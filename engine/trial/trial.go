// Package trial runs a pipeline's filter chain on saved messages and says
// what it would do with each — the verdict, where it would go, what
// changed in it, what it would generate — sending nothing and changing
// nothing ("mailflow test"). It is the chain of engine.Setup run the way a
// poll runs it, without outputs, ledger or source. Messages reads the
// messages from files, Maildirs, directories, mboxes (split by the reader
// the caller gives: the engine imports no connector) and standard input.
package trial

import (
	"context"
	"fmt"
	"io"
	"iter"
	"mime/quotedprintable"
	"strings"

	gomessage "github.com/emersion/go-message"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
)

// Result is what the chain would do with one message.
type Result struct {
	Name      string // the message's (Message.Name)
	Err       error  // the message could not be read, or a script broke (then it would be quarantined)
	HeaderErr error  // its header could not be parsed: it flows on untouched

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

// Run runs chain on the message m. defaults are the pipeline's outputs
// (nil for a chain of loose scripts).
func Run(chain *engine.Chain, m Message, defaults []string) *Result {
	r := &Result{Name: m.Name, Err: m.Err}
	if m.Err != nil {
		return r
	}
	msg, err := message.Read(m.R, message.Source{Input: "test", ID: m.ID}, message.DefaultSpool)
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

// Summary counts what a trial of several messages would do.
type Summary struct {
	Messages int
	// Verdicts counts each verdict; "broke" counts the messages that
	// could not be read or on which a script broke (they would be
	// quarantined).
	Verdicts map[string]int
}

// Broke is how many messages could not be read or broke a script.
func (s Summary) Broke() int { return s.Verdicts["broke"] }

// Try runs chain on each message of msgs in turn and writes what it would
// do with each to w (WriteText), then, for more than one, a line that
// counts the verdicts. defaults are as for Run.
func Try(chain *engine.Chain, msgs iter.Seq[Message], defaults []string, w io.Writer) Summary {
	sum := Summary{Verdicts: map[string]int{}}
	for m := range msgs {
		r := Run(chain, m, defaults)
		r.WriteText(w, defaults == nil)
		sum.Messages++
		if r.Err != nil {
			sum.Verdicts["broke"]++
		} else {
			sum.Verdicts[r.Verdict]++
		}
	}
	if sum.Messages > 1 {
		var parts []string
		for _, k := range []string{"keep", "route", "redirect", "drop", "quarantine", "leave", "broke"} {
			if n := sum.Verdicts[k]; n > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", n, k))
			}
		}
		fmt.Fprintf(w, "\n%d messages: %s\n", sum.Messages, strings.Join(parts, ", "))
	}
	return sum
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
