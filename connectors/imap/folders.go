package imap

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	goimap "github.com/emersion/go-imap/v2"
)

// mailflow names a folder the same way whatever the server: its levels
// separated by "/", without the personal namespace's prefix. Courier and
// Cyrus keep every folder under "INBOX." ("INBOX.Sent"), Dovecot and
// Exchange at the top ("Sent"): both are "Sent" to mailflow, so that a
// migration from one to the other puts Sent where the other keeps it. The
// names are Unicode; go-imap writes them in modified UTF-7 (RFC 3501
// 5.1.3), or as UTF-8 where the server takes it, and reads both.

// names is how one server writes folder names: its personal namespace's
// prefix and hierarchy separator (NAMESPACE, RFC 2342).
type names struct {
	prefix string // "INBOX." on Courier and Cyrus, "" on most others
	delim  rune   // 0 for a server without hierarchy
}

// path is mailflow's name for the server's folder name.
func (n names) path(server string) string {
	if strings.EqualFold(server, "INBOX") {
		return "INBOX"
	}
	if n.prefix != "" && len(server) > len(n.prefix) && strings.EqualFold(server[:len(n.prefix)], n.prefix) {
		server = server[len(n.prefix):]
	}
	return canonical(server, n.delim)
}

// server is the server's name for mailflow's folder path. A name already
// under the prefix ("INBOX/Sent", from a server that keeps its folders
// under INBOX, or a folder_map) is not given it twice.
func (n names) server(path string) (string, error) {
	if strings.EqualFold(path, "INBOX") {
		return "INBOX", nil
	}
	if n.delim != 0 && n.delim != '/' {
		for _, level := range strings.Split(path, "/") {
			if strings.ContainsRune(level, n.delim) {
				return "", &clashError{path: path, delim: n.delim}
			}
		}
	}
	name := serverName(path, n.delim)
	if n.prefix != "" && !(len(name) >= len(n.prefix) && strings.EqualFold(name[:len(n.prefix)], n.prefix)) {
		name = n.prefix + name
	}
	return name, nil
}

// clashError is a folder name that holds the destination's hierarchy
// separator ("v1.2" where "." separates levels): written as it is, it would
// become another folder ("v1" holding "2"). It is permanent: the config
// must say where such a folder goes.
type clashError struct {
	path  string
	delim rune
}

func (e *clashError) Error() string {
	return fmt.Sprintf("folder %q cannot be made at the destination: a level of its name holds %q, which separates levels there; "+
		"give it another name with folder_map (\"%s\" = \"%s\")", e.path, e.delim, e.path, strings.ReplaceAll(e.path, string(e.delim), "_"))
}

func (e *clashError) Permanent() bool { return true }

// canonical turns a server's folder name into mailflow's, with "/"
// between levels.
func canonical(name string, delim rune) string {
	if delim == 0 || delim == '/' {
		return name
	}
	return strings.ReplaceAll(name, string(delim), "/")
}

// serverName turns mailflow's folder name into the server's.
func serverName(path string, delim rune) string {
	if delim == 0 || delim == '/' {
		return path
	}
	return strings.ReplaceAll(path, "/", string(delim))
}

// mailbox is one folder as LIST gives it.
type mailbox struct {
	name   string // as the server names it (for SELECT, CREATE, APPEND)
	path   string // as mailflow names it (names.path)
	raw    string // the server's name with "/" between levels, prefix kept ("INBOX/Sent")
	role   string // its SPECIAL-USE attribute (\Sent, \Drafts, \Junk, \Trash, \Archive), if any
	status *goimap.StatusData
}

// roles are the SPECIAL-USE attributes (RFC 6154) that say what a folder
// is for, and that a migration maps to the destination's folder of the
// same use whatever its name ("Sent" → "Sent Items").
var roles = []goimap.MailboxAttr{goimap.MailboxAttrSent, goimap.MailboxAttrDrafts, goimap.MailboxAttrJunk,
	goimap.MailboxAttrTrash, goimap.MailboxAttrArchive}

// names asks the server, once per session, how it writes folder names:
// NAMESPACE where it has it, else the separator LIST "" "" gives.
func (c *conn) names() (names, error) {
	if c.ns != nil {
		return *c.ns, nil
	}
	defer c.wd.begin()()
	var n names
	if c.caps.Has(goimap.CapNamespace) || c.caps.Has(goimap.CapIMAP4rev2) {
		asked := time.Now()
		data, err := c.c.Namespace().Wait()
		c.rtt = time.Since(asked)
		if err != nil {
			return n, fmt.Errorf("imap NAMESPACE: %w", err)
		}
		if len(data.Personal) > 0 {
			n = names{prefix: data.Personal[0].Prefix, delim: data.Personal[0].Delim}
			c.ns = &n
			return n, nil
		}
	}
	delim, err := c.separator()
	if err != nil {
		return n, err
	}
	n = names{delim: delim}
	c.ns = &n
	return n, nil
}

// separator asks the server for its hierarchy separator (LIST "" "").
func (c *conn) separator() (rune, error) {
	defer c.wd.begin()()
	list, err := c.c.List("", "", nil).Collect()
	if err != nil {
		return 0, fmt.Errorf("imap LIST: %w", err)
	}
	for _, m := range list {
		return m.Delim, nil
	}
	return '/', nil
}

// folders lists the folders matching any of patterns ("INBOX", "Archive/*",
// "*", in mailflow's names), but those matching an exclude pattern, in
// LIST order, each with its SPECIAL-USE. A pattern also matches a folder by
// the server's own name with "/" between levels ("INBOX/Sent" for
// INBOX.Sent), as configs written before namespaces were mapped say.
func (c *conn) folders(patterns, exclude []string) ([]mailbox, error) {
	return c.listFolders(patterns, exclude, nil)
}

// listFolders is folders, with each folder's STATUS when status is not
// nil: in the same command where the server has LIST-STATUS (RFC 5819),
// else one STATUS per folder, sent together.
func (c *conn) listFolders(patterns, exclude []string, status *goimap.StatusOptions) ([]mailbox, error) {
	n, err := c.names()
	if err != nil {
		return nil, err
	}
	defer c.wd.begin()()
	opts := &goimap.ListOptions{}
	if c.caps.Has(goimap.CapSpecialUse) || c.caps.Has(goimap.CapIMAP4rev2) {
		opts.ReturnSpecialUse = true
	}
	listStatus := status != nil && (c.caps.Has(goimap.CapListStatus) || c.caps.Has(goimap.CapIMAP4rev2))
	if listStatus {
		opts.ReturnStatus = status
	}
	// Everything, matched here: a pattern in mailflow's names is not one
	// the server could match (another separator, no prefix). But INBOX
	// alone, the default, is asked for alone.
	pattern := "*"
	if len(patterns) > 0 && !slices.ContainsFunc(patterns, func(p string) bool { return !strings.EqualFold(p, "INBOX") }) {
		pattern = "INBOX"
	}
	list, err := c.c.List("", pattern, opts).Collect()
	if err != nil {
		return nil, fmt.Errorf("imap LIST: %w", err)
	}
	var out []mailbox
	seen := map[string]bool{}
	for _, m := range list {
		mb := mailbox{name: m.Mailbox, path: n.path(m.Mailbox), raw: canonical(m.Mailbox, m.Delim), status: m.Status}
		if mb.path == "INBOX" {
			mb.raw = "INBOX"
		}
		// \NonExistent (LIST-EXTENDED's answer for a parent that holds
		// nothing itself) implies \NoSelect.
		if seen[m.Mailbox] || slices.Contains(m.Attrs, goimap.MailboxAttrNoSelect) ||
			slices.Contains(m.Attrs, goimap.MailboxAttrNonExistent) {
			continue
		}
		if !mb.matches(patterns) || mb.matches(exclude) {
			continue
		}
		for _, a := range m.Attrs {
			if slices.Contains(roles, a) {
				mb.role = string(a)
			}
		}
		seen[m.Mailbox] = true
		out = append(out, mb)
	}
	if status != nil && !listStatus {
		if err := c.statusAll(out, status); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// statusAll asks the STATUS of every folder in one round trip: the
// commands go out together, the answers are read after.
func (c *conn) statusAll(folders []mailbox, opts *goimap.StatusOptions) error {
	cmds := make([]interface {
		Wait() (*goimap.StatusData, error)
	}, len(folders))
	for i, f := range folders {
		cmds[i] = c.c.Status(f.name, opts)
	}
	var errs []error
	for i, cmd := range cmds {
		data, err := cmd.Wait()
		if err != nil {
			errs = append(errs, fmt.Errorf("imap STATUS %q: %w", folders[i].name, err))
			continue
		}
		folders[i].status = data
	}
	return errors.Join(errs...)
}

// matches reports whether the folder matches one of the LIST-style
// patterns ("*" matches anything, "%" anything but "/"), by mailflow's
// name or the server's. INBOX matches in any case.
func (m mailbox) matches(patterns []string) bool {
	for _, p := range patterns {
		if m.path == "INBOX" && strings.EqualFold(p, "INBOX") {
			return true
		}
		if match(p, m.path, '/') || m.raw != m.path && match(p, m.raw, '/') {
			return true
		}
	}
	return false
}

// match reports whether name matches the LIST-style pattern p ("*"
// matches anything, "%" anything but delim).
func match(p, name string, delim rune) bool {
	for len(p) > 0 {
		switch p[0] {
		case '*', '%':
			for i := 0; i <= len(name); i++ {
				if p[0] == '%' && delim != 0 && strings.ContainsRune(name[:i], delim) {
					break
				}
				if match(p[1:], name[i:], delim) {
					return true
				}
			}
			return false
		default:
			if name == "" || name[0] != p[0] {
				return false
			}
			p, name = p[1:], name[1:]
		}
	}
	return name == ""
}
