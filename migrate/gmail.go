package migrate

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/mailflow/mailflow/connectors/gmail"
	"github.com/mailflow/mailflow/connectors/mbox"
	"github.com/mailflow/mailflow/connectors/oauth"
	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
)

// A Gmail destination: gmail://me@gmail.com?client_id=ID, imported
// through the Gmail API (the gmail output), each message under the label
// of the folder it was in, as a person moving a mailbox into Gmail
// expects: INBOX in the inbox, Sent as sent mail, Junk as spam, every
// other folder a label of its name; a Takeout's messages with all their
// labels. The login is the gmail output's: "mailflow auth login -c
// STATE_DIR gmail", once, which the first run asks for.

// gmailOutputName is the output's name in a migration into Gmail, which
// "mailflow auth login -c STATE_DIR gmail" names.
const gmailOutputName = "gmail"

// gmailOptions are the query keys a gmail URL takes.
var gmailOptions = []string{"client_id", "client_secret_file", "label", "archive", "api_url"}

func parseGmail(side string, u *url.URL) (endpoint, error) {
	account, err := gmailAccount(side, u)
	if err != nil {
		return endpoint{}, err
	}
	q, err := options(side, u, gmailOptions...)
	if err != nil {
		return endpoint{}, err
	}
	if _, err := boolOption(side, q, "archive"); err != nil {
		return endpoint{}, err
	}
	return endpoint{scheme: "gmail", host: u.Hostname(), account: account, opts: q}, nil
}

// gmailAccount is the address a gmail URL names: gmail://me@gmail.com, or
// gmail://me (the API's name for the account that logged in).
func gmailAccount(side string, u *url.URL) (string, error) {
	if _, set := u.User.Password(); set {
		return "", fmt.Errorf("%s: put no password in the URL; Gmail is logged in with OAuth (mailflow auth login)", side)
	}
	account := u.Host
	if u.User != nil {
		account = u.User.Username() + "@" + u.Host
	}
	if u.Host == "" || u.Port() != "" || u.Opaque != "" || u.Path != "" && u.Path != "/" {
		return "", fmt.Errorf("%s %q: give the Gmail address: gmail://me@gmail.com", side, u.Redacted())
	}
	return account, nil
}

// gmailOutput is the gmail output of the plan's destination.
func gmailOutput(to endpoint) *gmail.Output {
	out := &gmail.Output{Username: to.account, APIURL: to.opts.Get("api_url")}
	out.Provider, out.ClientID = "google", to.opts.Get("client_id")
	if f := to.opts.Get("client_secret_file"); f != "" {
		out.ClientSecretFile = absPath(f)
	}
	for _, l := range to.opts["label"] {
		if l = strings.TrimSpace(l); l != "" {
			out.Labels = append(out.Labels, l)
		}
	}
	// INBOX is given by the folder (gmailLabels), not to every message;
	// UNREAD to what was not read (the source's \Seen), unless archived.
	archive, _ := boolOption("", to.opts, "archive")
	inbox, unread := false, !archive
	out.Inbox, out.Unread = &inbox, &unread
	return out
}

// gmailFilter is the filter that labels each message for the gmail
// output.
func gmailFilter(from, to endpoint) config.NamedFilter {
	g := gmailLabels{}
	g.archive, _ = boolOption("", to.opts, "archive")
	// A Takeout's X-Gmail-Labels are read from an mbox only: mail from a
	// server could carry the field to file itself anywhere.
	g.takeout = from.scheme == "mbox" && (from.opts.Get("labels") == "" || from.opts.Get("labels") == "all")
	return config.NamedFilter{Name: "labels from folders", Filter: g}
}

// gmailLabels labels each message after the folder it was in at its
// source (and, from a Takeout, after its X-Gmail-Labels) by adding a
// field of the gmail output's labels_header, which the output reads and
// removes before the import.
type gmailLabels struct {
	takeout bool // read X-Gmail-Labels where the message has it
	archive bool // nothing goes into the inbox
}

// Filter implements plugin.Filter.
func (g gmailLabels) Filter(_ context.Context, msg *message.Message) (plugin.Verdict, error) {
	var names []string
	if v := msg.Header.Get("X-Gmail-Labels"); g.takeout && v != "" {
		names = takeoutLabels(mbox.SplitLabels(v))
	} else {
		names = folderLabels(msg.Folder, msg.FolderRole)
	}
	if g.archive {
		names = slices.DeleteFunc(names, func(n string) bool { return n == "INBOX" })
	}
	if len(names) == 0 || msg.HeaderErr != nil {
		// No header to put the labels in: it goes with the output's own
		// labels only (archived).
		return plugin.Verdict{}, nil
	}
	value := strings.Join(names, ", ")
	if err := msg.Header.CheckAdd(gmail.DefaultLabelsHeader, value); err != nil {
		return plugin.Verdict{}, fmt.Errorf("the labels %s: %w", value, err)
	}
	msg.Header.Add(gmail.DefaultLabelsHeader, value)
	msg.MarkHeaderChanged()
	return plugin.Verdict{}, nil
}

// folderLabels are the labels of a message in folder (its SPECIAL-USE
// role), as a person moving a mailbox into Gmail expects them: Gmail's
// own for the folders Gmail has (INBOX; Sent, Junk and Trash by their
// role, or by their usual names on a server without roles; Gmail IMAP's
// \Flagged and \Important), none for an archive (Gmail's All Mail is
// where every message is anyway), "_Drafts" for drafts (an import cannot
// make a draft, and Gmail keeps the name Drafts), else a label named after
// the folder ("Work/2024" nests under "Work"). A source without folders
// (POP3) is an inbox.
func folderLabels(folder, role string) []string {
	switch strings.ToLower(role) {
	case `\sent`:
		return []string{"SENT"}
	case `\junk`:
		return []string{"SPAM"}
	case `\trash`:
		return []string{"TRASH"}
	case `\flagged`:
		return []string{"STARRED"}
	case `\important`:
		return []string{"IMPORTANT"}
	case `\archive`, `\all`:
		return nil
	case `\drafts`:
		return []string{labelName("Drafts")}
	}
	// Folders below the inbox (Courier's and Cyrus's INBOX.Work, Dovecot's
	// INBOX/Work) are labels of their own: Gmail nests nothing under INBOX.
	if len(folder) > len("INBOX/") && strings.EqualFold(folder[:len("INBOX/")], "INBOX/") {
		folder = folder[len("INBOX/"):]
	}
	switch strings.ToLower(folder) {
	case "", "inbox":
		return []string{"INBOX"}
	case "sent", "sent items", "sent messages", "sent mail":
		return []string{"SENT"}
	case "junk", "spam", "junk e-mail", "junk email":
		return []string{"SPAM"}
	case "trash", "deleted items", "deleted messages":
		return []string{"TRASH"}
	case "archive", "archives", "all mail":
		return nil
	}
	return []string{labelName(folder)}
}

// takeoutLabels are the Gmail labels of a Takeout message, from its
// X-Gmail-Labels: Gmail's own by their ids, every other by its name. Unread
// and Starred are left to the message's flags (the mbox input made them
// \Seen and \Flagged, and the output maps those), Opened and Archived are
// no labels, Chats and IMAP_ keywords have none in Gmail.
func takeoutLabels(labels []string) []string {
	var out []string
	for _, l := range labels {
		lower := strings.ToLower(l)
		switch {
		case lower == "inbox", lower == "sent", lower == "spam", lower == "trash", lower == "important":
			out = append(out, strings.ToUpper(lower))
		case lower == "unread", lower == "starred", lower == "opened", lower == "archived", lower == "chat",
			strings.HasPrefix(lower, "imap_"):
		case strings.HasPrefix(lower, "category "):
			switch c := strings.ToUpper(strings.TrimSpace(lower[len("category "):])); c {
			case "PERSONAL", "SOCIAL", "PROMOTIONS", "UPDATES", "FORUMS":
				out = append(out, "CATEGORY_"+c)
			}
		default:
			out = append(out, labelName(l))
		}
	}
	return out
}

// reservedLabels are names Gmail keeps for itself and refuses for a label
// of one's own ("Invalid label name"), but for those that are its system
// labels' names, which folderLabels and takeoutLabels give by id. As
// Got Your Back does, such a name is given with a "_" before it.
var reservedLabels = []string{"draft", "drafts", "chat", "chats", "muted", "migrated", "todo", "todos", "buzz",
	"bin", "allmail", "all mail", "sent mail", "archived", "opened", "scheduled", "snoozed", "spam", "trash",
	"inbox", "sent", "unread", "starred", "important"}

// labelName is a folder's or label's name as a Gmail label of one's own:
// a reserved name with "_" before it, and a comma (which separates labels
// in labels_header) made ";".
func labelName(name string) string {
	name = strings.ReplaceAll(strings.TrimSpace(name), ",", ";")
	if slices.Contains(reservedLabels, strings.ToLower(name)) {
		return "_" + name
	}
	return name
}

// checkLogin says how to log in when the plan's Gmail destination has no
// tokens yet: before the run lists and fetches anything, rather than have
// every message wait for a login.
func checkLogin(cfg *config.Config, state string) error {
	for _, oc := range cfg.Outputs {
		u, ok := oc.Plugin.(oauth.User)
		if !ok || u.OAuth() == nil {
			continue
		}
		who := u.OAuth().Account // set by Init, which the engine has not run yet
		if g, ok := oc.Plugin.(*gmail.Output); ok {
			who = g.Username
		}
		if _, err := oauth.NewStore(cfg.StateDir).Load(oc.Name); errors.Is(err, oauth.ErrNoToken) {
			return fmt.Errorf("log in to %s once, in a browser, then run this command again:\n  mailflow auth login -c %s %s",
				who, state, oc.Name)
		}
	}
	return nil
}
