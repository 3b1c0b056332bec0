package gmailimaptest

import (
	"crypto/sha256"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// What a destination must hold after a migration from Gmail, worked out
// from the labels here, apart from the code under test, and what an IMAP
// mailbox holds, in the same terms: a count of copies by Key.

// Key names a copy: its folder, its bytes and its flags (in lower case,
// sorted: servers differ in how they write keywords).
func Key(folder string, body []byte, flags []string) string {
	fl := make([]string, 0, len(flags))
	for _, f := range flags {
		if !strings.EqualFold(f, `\Recent`) {
			fl = append(fl, strings.ToLower(f))
		}
	}
	sort.Strings(fl)
	return fmt.Sprintf("%s|%x|%v", folder, sha256.Sum256(body), slices.Compact(fl))
}

// Want is what a destination must hold of msgs when their labels become
// places under rule ("folders", "keywords" or "first"), Spam and Trash
// with spamTrash: INBOX for \Inbox, Sent for \Sent, Drafts for \Draft
// (with \Draft), each label of one's own its folder, Archive for a
// message with none; \Starred as \Flagged, \Important as $Important;
// "keywords" once where Gmail shows it, labels as keywords ("_" for a
// space and what is not ASCII); "first" once, labels of one's own first
// by name, then INBOX, Sent, Drafts.
func Want(rule string, msgs []Message, spamTrash bool) map[string]int {
	out := map[string]int{}
	for _, m := range msgs {
		flags := slices.Clone(m.Flags)
		var own, system []string
		var inbox, sent, draft bool
		for _, l := range m.Labels {
			switch l {
			case `\Inbox`:
				inbox = true
			case `\Sent`:
				sent = true
			case `\Draft`:
				draft = true
				flags = append(flags, `\Draft`)
			case `\Important`:
				flags = append(flags, "$Important")
			case `\Starred`:
				flags = append(flags, `\Flagged`)
			default:
				own = append(own, l)
			}
		}
		sort.Strings(own)
		if inbox {
			system = append(system, "INBOX")
		}
		if sent {
			system = append(system, "Sent")
		}
		if draft {
			system = append(system, "Drafts")
		}
		var folders []string
		switch {
		case m.Spam || m.Trash:
			if !spamTrash {
				continue
			}
			folders = []string{"Trash"}
			if m.Spam {
				folders = []string{"Spam"}
			}
		case rule == "keywords":
			folders = append(system, "Archive")[:1]
			for _, l := range own {
				var k strings.Builder
				for _, r := range l {
					if r == ' ' || r > 0x7e {
						r = '_'
					}
					k.WriteRune(r)
				}
				flags = append(flags, k.String())
			}
		case rule == "first":
			folders = append(append(own, system...), "Archive")[:1]
		default:
			folders = append(own, system...)
			if len(folders) == 0 {
				folders = []string{"Archive"}
			}
		}
		for _, f := range folders {
			out[Key(f, m.Body, flags)]++
		}
	}
	return out
}

// Copies is how many copies want counts in all.
func Copies(want map[string]int) int {
	n := 0
	for _, c := range want {
		n += c
	}
	return n
}

// Diff says how got differs from want, a line a copy; "" when it does
// not.
func Diff(want, got map[string]int) string {
	var lines []string
	for k, n := range want {
		if got[k] != n {
			lines = append(lines, fmt.Sprintf("  %s: %d, want %d", k, got[k], n))
		}
	}
	for k, n := range got {
		if _, ok := want[k]; !ok {
			lines = append(lines, fmt.Sprintf("  %s: %d, want none", k, n))
		}
	}
	sort.Strings(lines)
	if len(lines) > 20 {
		lines = append(lines[:20], fmt.Sprintf("  … and %d more", len(lines)-20))
	}
	if len(lines) == 0 {
		return ""
	}
	return "\n" + strings.Join(lines, "\n")
}

// Holds reads what the mailbox user holds at the IMAP server addr (in
// clear, on 127.0.0.1), as Want counts it: the folder as the server names
// it, with "/" between levels.
func Holds(t testing.TB, addr, user, password string) map[string]int {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(user, password).Wait(); err != nil {
		t.Fatal(err)
	}
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, l := range list {
		if slices.Contains(l.Attrs, imap.MailboxAttrNoSelect) {
			continue
		}
		data, err := c.Select(l.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		if data.NumMessages == 0 {
			continue
		}
		folder := l.Mailbox
		if l.Delim != 0 && l.Delim != '/' {
			folder = strings.ReplaceAll(folder, string(l.Delim), "/")
		}
		cmd := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true,
			BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
		for {
			m := cmd.Next()
			if m == nil {
				break
			}
			var flags []string
			var body []byte
			for {
				item := m.Next()
				if item == nil {
					break
				}
				switch item := item.(type) {
				case imapclient.FetchItemDataFlags:
					for _, f := range item.Flags {
						flags = append(flags, string(f))
					}
				case imapclient.FetchItemDataBodySection:
					body, _ = io.ReadAll(item.Literal)
				}
			}
			out[Key(folder, body, flags)]++
		}
		if err := cmd.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}
