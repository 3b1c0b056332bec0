package migrate

import (
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mailflow/mailflow/connectors/mbox"
)

// An mbox source: mbox:///path/Takeout.mbox (or mbox:relative/path), with
// the mbox input's options in the query. The file is never changed, and
// each message's id is its offset and a digest of its header, so a run
// again (after a kill, with the file grown) moves only what was not moved.

// mboxOptions are the query keys an mbox URL takes: the mbox input's
// options of the same names.
var mboxOptions = []string{"labels", "include_spam_trash", "folder", "variant"}

func parseMbox(side string, u *url.URL) (endpoint, error) {
	path, err := mboxPath(side, u)
	if err != nil {
		return endpoint{}, err
	}
	q, err := options(side, u, mboxOptions...)
	if err != nil {
		return endpoint{}, err
	}
	if _, err := boolOption(side, q, "include_spam_trash"); err != nil {
		return endpoint{}, err
	}
	if _, err := mbox.ParseVariant(q.Get("variant")); err != nil {
		return endpoint{}, fmt.Errorf("%s: ?variant=: %v", side, err)
	}
	return endpoint{scheme: "mbox", host: "mbox", path: path, opts: q}, nil
}

// mboxPath is the file an mbox URL names, made absolute.
func mboxPath(side string, u *url.URL) (string, error) {
	path := u.Path
	switch {
	case u.Opaque != "":
		path, _ = url.PathUnescape(u.Opaque) // mbox:relative/path
	case u.User != nil || u.Host != "" && u.Host != "localhost":
		return "", fmt.Errorf("%s %q: an mbox is a file here: mbox:///path/to/file.mbox (three slashes), or mbox:relative/path", side, u.Redacted())
	}
	if path == "" || strings.HasSuffix(path, "/") {
		return "", fmt.Errorf("%s %q names no file: mbox:///path/to/file.mbox", side, u.Redacted())
	}
	return absPath(filepath.FromSlash(path)), nil
}

// url is the mbox URL with its file's absolute path and its options.
func (ep endpoint) url() string {
	u := url.URL{Scheme: "mbox", Path: filepath.ToSlash(ep.path), RawQuery: ep.opts.Encode()}
	return u.String()
}

// mboxInput is the mbox input of the plan's source.
func mboxInput(from, to endpoint) *mbox.Input {
	in := &mbox.Input{Path: from.path, Folder: from.opts.Get("folder"), Variant: from.opts.Get("variant")}
	in.IncludeSpamTrash, _ = boolOption("", from.opts, "include_spam_trash")
	in.Labels = from.opts.Get("labels")
	if to.scheme == "gmail" && in.Labels != "none" {
		// One message, one import, under all its labels (gmailLabels):
		// the input's folder is its first label, which a Takeout without
		// X-Gmail-Labels does not have.
		in.Labels = "first"
	}
	return in
}

// checkLabels checks ?labels= against the destination: a message is
// imported into Gmail once, with every label it had, so "copies" or
// "folders" (a message per label) and "keywords" (IMAP's) are not for
// Gmail, and "all" is only for it.
func checkLabels(from, to endpoint) error {
	if from.scheme != "mbox" {
		return nil
	}
	l := from.opts.Get("labels")
	ok := []string{"", "first", "copies", "folders", "keywords", "none"}
	if to.scheme == "gmail" {
		ok = []string{"", "all", "first", "none"}
	}
	if !slices.Contains(ok, l) {
		return fmt.Errorf("--from ...?labels=%s: into %s:// it is one of %s", l, to.scheme, strings.Join(ok[1:], ", "))
	}
	return nil
}

// options reads the query of an mbox or gmail URL, refusing keys it does
// not know (a misspelt option would otherwise be ignored silently).
func options(side string, u *url.URL, keys ...string) (url.Values, error) {
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", side, err)
	}
	for k := range q {
		if !slices.Contains(keys, k) {
			return nil, fmt.Errorf("%s: ?%s= is no option of %s:// URLs (they take %s)", side, k, u.Scheme, strings.Join(keys, ", "))
		}
	}
	return q, nil
}

// boolOption reads a yes-or-no option: "" is no.
func boolOption(side string, q url.Values, key string) (bool, error) {
	switch strings.ToLower(q.Get(key)) {
	case "", "false", "no", "0":
		return false, nil
	case "true", "yes", "1":
		return true, nil
	}
	return false, fmt.Errorf("%s: ?%s=%s: give true or false", side, key, q.Get(key))
}
