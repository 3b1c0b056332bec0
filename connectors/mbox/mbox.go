// Package mbox reads and writes mbox files: Google Takeout's Gmail export,
// and what Thunderbird, Apple Mail, mutt and a local mail spool hold.
//
// An mbox is one file of messages, each starting with a From_ line
// ("From sender date"). Its dialects differ in how a body line that itself
// starts with "From " is kept from looking like the next message:
//
//   - mboxo writes such a line as ">From ". A reader takes one '>' off
//     every ">From " line, which is wrong for a line that was ">From " to
//     begin with: the dialect is ambiguous.
//   - mboxrd adds one '>' to every line of ">*From " (">From " becomes
//     ">>From "), and a reader takes one off: every line comes back as it
//     was.
//   - mboxcl2 gives each message a Content-Length header and quotes
//     nothing: the length says where the next From_ line is.
//
// Reader (NewReader) reads any of them from a stream with a bounded buffer,
// handing each message over as a reader of its own bytes; the input is
// built on it, and so can "mailflow test". The input lists a file in one
// pass and fetches each message by its byte range; the output appends with
// mboxrd (or mboxo) quoting under fcntl and dot-file locks, as a mail
// spool's writers and readers expect. Takeout's X-Gmail-Labels become
// folders, flags and keywords (labels.go).
package mbox

import (
	_ "embed"
	"fmt"
	"path/filepath"

	"github.com/mailflow/mailflow/engine/plugin"

	"github.com/mailflow/mailflow/plugins"
)

//go:embed sample.conf
var sampleConfig string

func init() {
	plugins.AddInput("mbox", func() plugin.Input { return &Input{} })
	plugins.AddOutput("mbox", func() plugin.Output { return &Output{} })
}

// Variant is an mbox dialect: how a body line starting with "From " was
// kept from being read as the start of the next message.
type Variant int

const (
	// Auto reads a message whose Content-Length header ends it exactly at
	// a From_ line (or at the end of the file) as mboxcl2, and any other
	// as mboxrd. mboxo and mboxrd read alike but for a line of ">>From ",
	// which only mboxrd writes (for a body line ">From "): reading every
	// file as mboxrd gives a mboxo file back as mboxo would, but for a
	// body line that was ">>From " to begin with, which mboxo cannot tell
	// from a quoted ">From " anyway.
	Auto Variant = iota
	// Mboxo: one '>' is taken off every line starting ">From ".
	Mboxo
	// Mboxrd: one '>' is taken off every line starting with one or more
	// '>' and "From ".
	Mboxrd
	// Mboxcl2: a message ends where its Content-Length says; nothing is
	// unquoted. A message without a Content-Length, or whose
	// Content-Length does not end at a From_ line, is read up to the next
	// From_ line, with nothing unquoted either.
	Mboxcl2
)

var variantNames = [...]string{"auto", "mboxo", "mboxrd", "mboxcl2"}

func (v Variant) String() string {
	if v < 0 || int(v) >= len(variantNames) {
		return fmt.Sprintf("Variant(%d)", int(v))
	}
	return variantNames[v]
}

// ParseVariant reads a variant's name as the config writes it; "" is Auto.
func ParseVariant(s string) (Variant, error) {
	if s == "" {
		return Auto, nil
	}
	for i, n := range variantNames {
		if s == n {
			return Variant(i), nil
		}
	}
	return Auto, fmt.Errorf(`variant must be "auto", "mboxo", "mboxrd" or "mboxcl2", not %q`, s)
}

// resolve makes a path from the config absolute, relative to base.
func resolve(base, p string) string {
	if p != "" && !filepath.IsAbs(p) {
		return filepath.Join(base, p)
	}
	return p
}
