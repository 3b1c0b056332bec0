package imap

import (
	"strings"
	"sync"
)

// layout is what an output knows of the destination's folders: its
// hierarchy separator and which folder serves which SPECIAL-USE, read once
// from the first session.
type layout struct {
	mu     sync.Mutex
	known  bool
	delim  rune
	byRole map[string]string // SPECIAL-USE attribute → folder (mailflow's name)
}

// learn reads the destination's layout over c, once.
func (l *layout) learn(c *conn) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.known {
		return nil
	}
	delim, err := c.separator()
	if err != nil {
		return err
	}
	all, err := c.folders([]string{"*"}, nil)
	if err != nil {
		return err
	}
	l.byRole = map[string]string{}
	for _, m := range all {
		if m.role != "" && l.byRole[m.role] == "" {
			l.byRole[m.role] = m.path()
		}
	}
	l.delim, l.known = delim, true
	return nil
}

// place is the destination folder, as the server names it, for mail from
// folder (mailflow's name; "" for a source without folders) whose folder
// had the SPECIAL-USE role. In order: folder_map (an exact name, else the
// longest "A/*" tree that holds it), the destination's folder of the same
// use, the same name; mail from no folder goes to fallback.
func (l *layout) place(folderMap map[string]string, fallback, folder, role string) string {
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
	return serverName(path, l.delim)
}

// mapFolder applies folder_map to folder: "Sent" = "Sent Items" renames
// one folder, "A/*" = "B/*" a folder and everything below it (the longest
// such A wins). "" when no entry applies.
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
	return best
}
