package imap

import (
	"context"
	"errors"
	"fmt"

	goimap "github.com/emersion/go-imap/v2"

	"github.com/mailflow/mailflow/engine/plugin"
)

// A verification passes over a folder that changed on neither side since
// it found the two equal (plugin.FolderStater's tokens). Asked folder by
// folder, that is a STATUS per folder and side, one after the other; here
// both sides say every folder's token at once: the source in the LIST
// that names its folders (LIST-STATUS, RFC 5819), the destination in
// STATUS commands sent together. The tokens are those of folderState.

// errNoModSeq says a server without CONDSTORE cannot tell a flag change
// from STATUS: its folders have no tokens.
var errNoModSeq = errors.New("imap: the server has no CONDSTORE; a folder's state cannot be told without reading it")

// Folders implements plugin.FolderLister: every folder the input reads,
// with its token and how many messages it holds, from one LIST ... RETURN
// (STATUS ...) where the server has LIST-STATUS.
func (s *session) Folders(ctx context.Context) ([]plugin.Folder, error) {
	if !s.c.condStore() {
		return nil, errNoModSeq
	}
	if s.gm != nil {
		return nil, errGmailFolders // its folders are no places (gmail.go)
	}
	folders, err := s.folders(tokenStatus)
	if err != nil {
		return nil, err
	}
	s.named = make(map[string]mailbox, len(folders))
	for _, f := range folders {
		s.named[f.path] = f
	}
	return foldersOf(folders), nil
}

// foldersOf are folders, listed with tokenStatus, as plugin.Folders.
func foldersOf(folders []mailbox) []plugin.Folder {
	out := make([]plugin.Folder, 0, len(folders))
	for _, f := range folders {
		pf := plugin.Folder{Name: f.path, Role: f.role, Messages: -1}
		if f.status != nil {
			pf.State = stateToken(f.status)
			if f.status.NumMessages != nil {
				pf.Messages = int(*f.status.NumMessages)
			}
		}
		out = append(out, pf)
	}
	return out
}

// ListNamed implements plugin.FolderNamer: the messages of a folder
// Folders listed, as List lists them, with their identities, from one
// UID FETCH of flags and the header fields that name a message (after a
// UID SEARCH where the input selects some).
func (s *session) ListNamed(ctx context.Context, folder string) ([]plugin.Item, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, ok := s.named[folder]
	if !ok {
		return nil, fmt.Errorf("imap: folder %q was not among those listed", folder)
	}
	data, err := s.c.selectFolder(f.name)
	if err != nil {
		return nil, err
	}
	msgs, err := s.c.matchingWith(data.NumMessages, s.in.criteria(), s.c.identify)
	if err != nil {
		return nil, err
	}
	var items []plugin.Item
	for _, m := range msgs {
		if it, ok := item(f, data.UIDValidity, m); ok {
			items = append(items, it)
		}
	}
	return items, nil
}

// FolderStates implements plugin.FolderStatesFinder: the tokens of the
// folders mail from folders goes to, a STATUS each, sent together.
func (o *Output) FolderStates(ctx context.Context, folders []plugin.Folder) ([]string, error) {
	targets := make([]string, len(folders))
	for i, f := range folders {
		t, err := o.target(ctx, f.Name, f.Role)
		if err != nil {
			return nil, err
		}
		targets[i] = t
	}
	var states []string
	err := o.use(ctx, func(c *conn) (err error) { states, err = c.folderStates(targets); return err })
	return states, err
}

// folderStates is folderState for many folders at once: the STATUS
// commands go out together, the answers are read after.
func (c *conn) folderStates(folders []string) ([]string, error) {
	out := make([]string, len(folders))
	if !c.condStore() || len(folders) == 0 {
		return out, nil
	}
	defer c.wd.begin()()
	cmds := make([]interface {
		Wait() (*goimap.StatusData, error)
	}, len(folders))
	for i, f := range folders {
		cmds[i] = c.c.Status(f, tokenStatus)
	}
	var errs []error
	for i, cmd := range cmds {
		data, err := cmd.Wait()
		switch {
		case err == nil:
			out[i] = stateToken(data)
		case missing(err):
			out[i] = "absent"
		default:
			errs = append(errs, fmt.Errorf("imap STATUS %q: %w", folders[i], err))
		}
	}
	return out, errors.Join(errs...)
}

var (
	_ plugin.FolderLister       = (*session)(nil)
	_ plugin.FolderStatesFinder = (*Output)(nil)
)
