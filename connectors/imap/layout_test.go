package imap

import "testing"

func TestFolderNamesBetweenSeparators(t *testing.T) {
	cases := []struct {
		server string
		delim  rune
		path   string
	}{
		{"INBOX", '.', "INBOX"},
		{"INBOX.Sent", '.', "INBOX/Sent"},
		{"Archive/2024", '/', "Archive/2024"},
		{"Lists\\go", '\\', "Lists/go"},
		{"Flat", 0, "Flat"},
	}
	for _, c := range cases {
		if got := canonical(c.server, c.delim); got != c.path {
			t.Errorf("canonical(%q, %q) = %q, want %q", c.server, c.delim, got, c.path)
		}
		if got := serverName(c.path, c.delim); got != c.server {
			t.Errorf("serverName(%q, %q) = %q, want %q", c.path, c.delim, got, c.server)
		}
	}
}

func TestPlaceByMapRoleOrName(t *testing.T) {
	l := &layout{known: true, delim: '.', byRole: map[string]string{`\Sent`: "Sent Items", `\Junk`: "Spam"}}
	fm := map[string]string{"Archive/*": "Old/*", "Archive/Keep/*": "Kept/*", "Notes": "Misc/Notes"}
	cases := []struct{ folder, role, want string }{
		{"", "", "INBOX"},                        // from POP3: the fallback
		{"Sent", `\Sent`, "Sent Items"},          // by use, whatever its name
		{"Junk", `\Junk`, "Spam"},                // likewise
		{"Drafts", `\Drafts`, "Drafts"},          // no such use there: same name
		{"Archive", "", "Old"},                   // a tree's root
		{"Archive/2024", "", "Old.2024"},         // below it, with the destination's separator
		{"Archive/Keep/x", "", "Kept.x"},         // the longest tree wins
		{"Notes", "", "Misc.Notes"},              // an exact entry
		{"Sent", `\Sent`, "Sent Items"},          // the map has no entry: the role decides
		{"Projekte/Größe", "", "Projekte.Größe"}, // non-ASCII kept (UTF-7 is the library's)
	}
	for _, c := range cases {
		if got := l.place(fm, "INBOX", c.folder, c.role); got != c.want {
			t.Errorf("place(%q, %q) = %q, want %q", c.folder, c.role, got, c.want)
		}
	}
	// folder_map wins over the role.
	if got := l.place(map[string]string{"Sent": "Outbox"}, "INBOX", "Sent", `\Sent`); got != "Outbox" {
		t.Errorf("folder_map over role: %q", got)
	}
}

// The whole path, LIST with SPECIAL-USE to the folder a message lands in
// and is verified in, is tested against Dovecot
// (TestDovecotSentLandsInTheDestinationsSentFolder): go-imap's memory
// server does not keep a folder's use.
