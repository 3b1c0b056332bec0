package imap

import (
	"errors"
	"testing"

	"github.com/mailflow/mailflow/engine/plugin"
)

// Folder names between a server that keeps its folders under "INBOX."
// (Courier, Cyrus) and mailflow's: the prefix goes on the way in and
// comes back on the way out, once; INBOX is INBOX; a name holding the
// separator of the server it goes to is refused, for good, with the way out.
func TestNamesMapThePersonalNamespace(t *testing.T) {
	courier := names{prefix: "INBOX.", delim: '.'}
	dovecot := names{delim: '/'}
	cases := []struct {
		server string
		n      names
		path   string
	}{
		{"INBOX", courier, "INBOX"},
		{"INBOX.Sent", courier, "Sent"},
		{"INBOX.Archive.2024", courier, "Archive/2024"},
		{"INBOX.Entwürfe", courier, "Entwürfe"},
		{"Sent", dovecot, "Sent"},
		{"INBOX/Sent", dovecot, "INBOX/Sent"}, // a folder below INBOX
		{"a/b", dovecot, "a/b"},
	}
	for _, c := range cases {
		if got := c.n.path(c.server); got != c.path {
			t.Errorf("%+v.path(%q) = %q, want %q", c.n, c.server, got, c.path)
		}
		if got, err := c.n.server(c.path); err != nil || got != c.server {
			t.Errorf("%+v.server(%q) = %q, %v; want %q", c.n, c.path, got, err, c.server)
		}
	}
	// Written by a folder_map or coming from a server without the prefix:
	// not prefixed twice.
	if got, _ := courier.server("INBOX/Sent"); got != "INBOX.Sent" {
		t.Errorf(`server("INBOX/Sent") = %q, want INBOX.Sent`, got)
	}
	_, err := courier.server("Projects/v1.2")
	var ce *clashError
	if !errors.As(err, &ce) || !plugin.IsPermanent(err) {
		t.Fatalf("a level holding the separator: %v, want a permanent clashError", err)
	}
	if _, err := dovecot.server("v1.2"); err != nil {
		t.Fatalf("%v: a dot is a dot where / separates", err)
	}
}

// folder_map's "*" maps every folder the other entries do not; INBOX into
// the target's own INBOX when that is INBOX.
func TestFolderMapWildcards(t *testing.T) {
	fm := map[string]string{"*": "INBOX/*", "Archive/*": "Old/*", "Notes": "Misc/Notes"}
	cases := map[string]string{
		"Sent":         "INBOX/Sent",
		"Lists/go":     "INBOX/Lists/go",
		"INBOX":        "INBOX",
		"Archive/2024": "Old/2024",
		"Notes":        "Misc/Notes",
	}
	for folder, want := range cases {
		if got := mapFolder(fm, folder); got != want {
			t.Errorf("mapFolder(%q) = %q, want %q", folder, got, want)
		}
	}
	if got := mapFolder(map[string]string{"*": "Old/*"}, "INBOX"); got != "Old/INBOX" {
		t.Errorf(`"*" = "Old/*" maps INBOX to %q, want Old/INBOX`, got)
	}
	l := &layout{known: true, prefix: "INBOX.", delim: '.', byRole: map[string]string{`\Sent`: "Sent"}}
	if got := l.place(map[string]string{"*": "INBOX/*"}, "INBOX", "Archive", ""); got != "INBOX.Archive" {
		t.Errorf(`"*" = "INBOX/*" at an INBOX. server: %q, want INBOX.Archive`, got)
	}
	if got := l.place(nil, "INBOX", "Sent Items", `\Sent`); got != "INBOX.Sent" {
		t.Errorf(`\Sent at an INBOX. server: %q, want INBOX.Sent`, got)
	}
}

// Every folder matches the input's patterns by mailflow's name, and by the
// server's own name with "/" between levels, as older configs wrote it.
func TestFolderPatterns(t *testing.T) {
	m := mailbox{name: "INBOX.Lists.go", path: "Lists/go", raw: "INBOX/Lists/go"}
	for _, p := range []string{"*", "Lists/*", "Lists/%", "INBOX/*", "Lists/go"} {
		if !m.matches([]string{p}) {
			t.Errorf("%q does not match %+v", p, m)
		}
	}
	for _, p := range []string{"%", "INBOX", "Lists"} {
		if m.matches([]string{p}) {
			t.Errorf("%q matches %+v", p, m)
		}
	}
	if !(mailbox{name: "INBOX", path: "INBOX", raw: "INBOX"}).matches([]string{"inbox"}) {
		t.Error("INBOX matches in any case")
	}
}
