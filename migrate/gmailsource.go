package migrate

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/mailflow/mailflow/connectors/imap"
)

// A Gmail source: imaps://me@gmail.com@imap.gmail.com. Read as any IMAP
// server's folders, Gmail shows each message once in [Gmail]/All Mail and
// again in the folder of each of its labels, and Spam and Trash besides,
// so that a copy of every folder holds each message several times. So a
// migration reads Gmail's own view wherever the source offers X-GM-EXT-1
// (only Gmail and Google Workspace do): All Mail once, each label made a
// folder at the destination (--labels), Spam and Trash left out unless
// --include-spam-trash (the imap input's gmail keys, gmail.go there).
// This is automatic rather than asked for, because the plain copy is never
// what anyone moving a Gmail account wants, and the extension says
// reliably that the source is Gmail; --gmail=false copies the folders as
// they are, --gmail refuses a source that is not Gmail.

// GmailSource is how a Gmail source is read (see above).
type GmailSource struct {
	// Gmail is nil to read Gmail's view where the source offers
	// X-GM-EXT-1, true to read it and refuse a source that does not
	// offer it, false to read the folders as they are.
	Gmail *bool `json:"gmail,omitempty"`
	// Labels is what Gmail's labels become at the destination: "folders"
	// (default: a copy of the message in the folder of each label),
	// "keywords" (once, its labels as keywords) or "first" (once, in the
	// folder of its first label).
	Labels string `json:"labels,omitempty"`
	// IncludeSpamTrash also moves Gmail's Spam and Trash.
	IncludeSpamTrash bool `json:"include_spam_trash,omitempty"`
}

// labelRules are the values of --labels.
var labelRules = []string{"folders", "keywords", "first"}

// GmailFlags adds the flags of a Gmail source, and --max-bytes-per-day,
// to a command's flags: they are kept here, beside the code that reads
// them.
func (p *Plan) GmailFlags(f *pflag.FlagSet) {
	f.Var(gmailFlag{&p.Gmail}, "gmail", "IMAP source: read Gmail's All Mail once and make its labels folders; auto: when the source offers X-GM-EXT-1 (false: copy its folders as they are)")
	f.Lookup("gmail").NoOptDefVal = "true"
	f.StringVar(&p.Labels, "labels", "", "Gmail source: what its labels become: `folders` (a copy per label; default), keywords (once, labels as keywords) or first (once, in its first label's folder)")
	f.BoolVar(&p.IncludeSpamTrash, "include-spam-trash", false, "Gmail source: move its Spam and Trash too (into Spam and Trash)")
	f.Int64Var(&p.MaxBytesPerDay, "max-bytes-per-day", 0, "IMAP: read at most `N` bytes a day from the source and store at most N a day at the destination (Gmail: 2500000000 read, 500000000 stored; 0: no limit)")
}

// gmailFlag is --gmail: unset, true or false.
type gmailFlag struct{ v **bool }

func (g gmailFlag) String() string {
	if g.v == nil || *g.v == nil {
		return "auto"
	}
	return strconv.FormatBool(**g.v)
}

func (g gmailFlag) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("--gmail takes true or false")
	}
	*g.v = &b
	return nil
}

func (gmailFlag) Type() string { return "bool" }

// checkGmail checks the Gmail options and the daily bound against the
// endpoints.
func (p *Plan) checkGmail(from, to endpoint) error {
	gmailSet := p.Gmail != nil || p.Labels != "" || p.IncludeSpamTrash
	switch {
	case gmailSet && from.scheme != "imap":
		return fmt.Errorf("--gmail, --labels and --include-spam-trash are for an IMAP source (Gmail); an mbox from Google Takeout takes ?labels= and ?include_spam_trash= in its URL")
	case p.Labels != "" && !slices.Contains(labelRules, p.Labels):
		return fmt.Errorf("--labels=%s: it is one of folders, keywords, first", p.Labels)
	case p.Gmail != nil && !*p.Gmail && (p.Labels != "" || p.IncludeSpamTrash):
		return fmt.Errorf("--labels and --include-spam-trash are for Gmail's view, which --gmail=false turns off")
	case to.scheme == "gmail" && p.Labels == "folders":
		return fmt.Errorf("--labels=folders into gmail:// would import each message once per label; give --labels=first")
	case p.MaxBytesPerDay < 0:
		return fmt.Errorf("--max-bytes-per-day must not be negative")
	case p.MaxBytesPerDay > 0 && from.scheme != "imap" && to.scheme != "imap":
		return fmt.Errorf("--max-bytes-per-day is for an IMAP source or destination")
	}
	return nil
}

// gmailInput sets the imap input's Gmail keys and daily bound from the
// plan.
func (p *Plan) gmailInput(in *imap.Input, to endpoint) {
	in.Gmail = "auto"
	if p.Gmail != nil {
		in.Gmail = map[bool]string{true: "on", false: "off"}[*p.Gmail]
	}
	in.GmailLabels, in.GmailSpamTrash = p.Labels, p.IncludeSpamTrash
	if to.scheme == "gmail" && in.GmailLabels == "" {
		// Into Gmail a message is imported once, under labels of its
		// folder: a copy per label would be a message per label there.
		in.GmailLabels = "first"
	}
	in.MaxBytesPerDay = p.MaxBytesPerDay
}

// resumeGmail takes from saved what p does not set.
func (p *Plan) resumeGmail(saved Plan) {
	if p.Gmail == nil {
		p.Gmail = saved.Gmail
	}
	if p.Labels == "" {
		p.Labels = saved.Labels
	}
	p.IncludeSpamTrash = p.IncludeSpamTrash || saved.IncludeSpamTrash
	if p.MaxBytesPerDay == 0 {
		p.MaxBytesPerDay = saved.MaxBytesPerDay
	}
}
