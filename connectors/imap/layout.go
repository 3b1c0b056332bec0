package imap

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	goimap "github.com/emersion/go-imap/v2"

	"github.com/mailflow/mailflow/engine/plugin"
)

// layout is what an output knows of the destination's folders: how it
// writes their names (namespace prefix, separator), which folder serves
// which SPECIAL-USE, which folders exist, read once from the first
// session; and the folders it made or could not make since.
type layout struct {
	mu     sync.Mutex
	known  bool
	delim  rune
	prefix string
	byRole map[string]string // SPECIAL-USE attribute → folder (mailflow's name)
	limit  *uint32           // APPENDLIMIT, when the server has one
	exists map[string]bool   // folders (the server's names) that take mail
	// refused are the folders whose CREATE the server refused, with its
	// answer: asked once, not before every message for them.
	refused map[string]error

	learning sync.Mutex // one reading of the layout
	creating sync.Mutex // one CREATE at a time, so that each goes once
}

// learnOnce reads the destination's layout the first time it is called,
// on a session use lends; callers meanwhile wait for it.
func (l *layout) learnOnce(ctx context.Context, use func(context.Context, func(*conn) error) error) error {
	known := func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.known
	}
	if known() {
		return nil
	}
	l.learning.Lock()
	defer l.learning.Unlock()
	if known() {
		return nil
	}
	return use(ctx, l.learn)
}

// learn reads the destination's layout over c, once.
func (l *layout) learn(c *conn) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.known {
		return nil
	}
	n, err := c.names()
	if err != nil {
		return err
	}
	all, err := c.folders([]string{"*"}, nil)
	if err != nil {
		return err
	}
	l.byRole, l.exists = map[string]string{}, map[string]bool{"INBOX": true}
	for _, m := range all {
		l.exists[m.name] = true
		if m.role != "" && l.byRole[m.role] == "" {
			l.byRole[m.role] = m.path
		}
	}
	if limit, ok := c.caps.AppendLimit(); ok {
		l.limit = limit
	}
	l.delim, l.prefix, l.known = n.delim, n.prefix, true
	return nil
}

// appendLimit is the largest message the server said it takes
// (APPENDLIMIT, RFC 7889), if it said.
func (l *layout) appendLimit() (int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.limit == nil || *l.limit == 0 {
		return 0, false
	}
	return int64(*l.limit), true
}

// target is the destination folder, as the server names it, for mail from
// folder (mailflow's name; "" for a source without folders) whose folder
// had the SPECIAL-USE role. In order: folder_map (an exact name, else the
// longest "A/*" tree that holds it, else "*"), the destination's folder of
// the same use, the same name; mail from no folder goes to fallback. A
// name the destination cannot write (it holds its separator) is a
// permanent error.
func (l *layout) target(folderMap map[string]string, fallback, folder, role string) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	path := mapFolder(folderMap, folder)
	switch {
	case path != "":
	case folder == "":
		path = fallback
	case role != "" && l.byRole[role] != "":
		path = l.byRole[role]
	default:
		path = folder
	}
	return names{prefix: l.prefix, delim: l.delim}.server(path)
}

// place is target without its error, for tests of the mapping.
func (l *layout) place(folderMap map[string]string, fallback, folder, role string) string {
	name, _ := l.target(folderMap, fallback, folder, role)
	return name
}

// mapFolder applies folder_map to folder: "Sent" = "Sent Items" renames
// one folder, "A/*" = "B/*" a folder and everything below it (the longest
// such A wins), "*" = "B/*" every folder the others do not name (INBOX
// too, but into B's own INBOX when B is INBOX). "" when no entry applies.
func mapFolder(folderMap map[string]string, folder string) string {
	if folder == "" {
		return ""
	}
	if to, ok := folderMap[folder]; ok {
		return to
	}
	best, bestLen := "", -1
	for from, to := range folderMap {
		base, tree := strings.CutSuffix(from, "/*")
		if !tree || len(base) <= bestLen {
			continue
		}
		toBase := strings.TrimSuffix(to, "/*")
		if folder == base {
			best, bestLen = toBase, len(base)
		} else if rest, ok := strings.CutPrefix(folder, base+"/"); ok {
			best, bestLen = toBase+"/"+rest, len(base)
		}
	}
	if to, ok := folderMap["*"]; ok && best == "" {
		toBase := strings.TrimSuffix(to, "/*")
		if strings.EqualFold(folder, "INBOX") && strings.EqualFold(toBase, "INBOX") {
			return "INBOX"
		}
		return toBase + "/" + folder
	}
	return best
}

// forget is told that folder is not there after all (the server said
// TRYCREATE): someone deleted it.
func (l *layout) forget(folder string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.exists, folder)
}

// ensure makes folder unless it is known to exist: CREATE once (an
// ALREADYEXISTS is as good as an OK). A folder the server made as the
// parent of another is looked for (LIST) before it is given up on; a CREATE
// the server refuses for good is a permanent error with its reason, kept,
// so that the messages for that folder are not tried one by one. use runs
// a command on a session of its own.
func (l *layout) ensure(ctx context.Context, folder string, use func(context.Context, func(*conn) error) error) error {
	if ok, err := l.state(folder); ok || err != nil {
		return err
	}
	l.creating.Lock()
	defer l.creating.Unlock()
	if ok, err := l.state(folder); ok || err != nil {
		return err
	}
	var made bool
	err := use(ctx, func(c *conn) error {
		err := c.create(folder)
		if err == nil {
			made = true
			return nil
		}
		var ie *goimap.Error
		if !errors.As(err, &ie) {
			return err
		}
		if there, lerr := c.selectable(folder); lerr != nil || there {
			made = there
			return lerr
		}
		return err
	})
	var ie *goimap.Error
	switch {
	case made:
		l.mu.Lock()
		l.exists[folder] = true
		l.mu.Unlock()
		return nil
	case errors.As(err, &ie) && createRefused(ie):
		// The folder is refused, not the message (plugin.RefusedPlaceError):
		// the engine leaves its messages at their source.
		err = plugin.RefusedPlace(folder, fmt.Errorf("imap CREATE %q: the server refused it: %w", folder, err))
		l.mu.Lock()
		l.refused[folder] = err
		l.mu.Unlock()
		return err
	case err != nil:
		return throttled(fmt.Errorf("imap CREATE %q: %w", folder, err))
	}
	return nil
}

// MakePlace implements plugin.PlaceMaker: the folder mail from folder goes
// to is made now, once, as a first delivery there would. A name the
// destination cannot write (it holds its separator) is a refused place too.
func (o *Output) MakePlace(ctx context.Context, folder, role string) error {
	target, err := o.target(ctx, folder, role)
	if err != nil {
		if plugin.IsPermanent(err) {
			return plugin.RefusedPlace(folder, err)
		}
		return err
	}
	return o.layout.ensure(ctx, target, o.use)
}

var _ plugin.PlaceMaker = (*Output)(nil)

// state reports whether folder is known to exist, or the error its CREATE
// was refused with.
func (l *layout) state(folder string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.exists == nil {
		l.exists = map[string]bool{"INBOX": true}
	}
	if l.refused == nil {
		l.refused = map[string]error{}
	}
	return l.exists[folder], l.refused[folder]
}

// createRefused reports whether the server's no to a CREATE is for good:
// anything but a server busy, broken or asking to wait.
func createRefused(ie *goimap.Error) bool {
	if _, ok := serverWait(ie); ok {
		return false
	}
	switch ie.Code {
	case goimap.ResponseCodeServerBug, goimap.ResponseCodeInUse, goimap.ResponseCodeUnavailable:
		return false
	}
	return true
}

// selectable reports whether folder exists and can hold mail (LIST).
func (c *conn) selectable(folder string) (bool, error) {
	defer c.wd.begin()()
	list, err := c.c.List("", folder, nil).Collect()
	if err != nil {
		return false, fmt.Errorf("imap LIST %q: %w", folder, err)
	}
	for _, m := range list {
		if m.Mailbox == folder && !slices.Contains(m.Attrs, goimap.MailboxAttrNoSelect) &&
			!slices.Contains(m.Attrs, goimap.MailboxAttrNonExistent) {
			return true, nil
		}
	}
	return false, nil
}
