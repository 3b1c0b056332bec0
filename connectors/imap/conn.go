package imap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailflow/mailflow/connectors/internal/sasl"
	"github.com/mailflow/mailflow/engine/message"
)

// conn is the little of IMAP that mailflow uses, over emersion/go-imap/v2
// (a beta: keeping it behind this type means a change of library touches
// this file only).
type conn struct {
	c    *imapclient.Client
	caps goimap.CapSet
	sel  string    // the selected folder
	wd   *watchdog // every command below runs under it
}

// msgInfo is one message of a folder as a listing gives it.
type msgInfo struct {
	UID      uint32
	Size     int64
	Flags    []string
	Date     time.Time
	Identity string // message.Identity: the Message-ID, or a digest of Date, From, Subject and size
}

// identityFields is the part of the header a listing fetches to name each
// message (message.Identity) without fetching it whole.
var identityFields = &goimap.FetchItemBodySection{Specifier: goimap.PartSpecifierHeader,
	HeaderFields: []string{"Message-ID", "Date", "From", "Subject"}, Peek: true}

// dial connects, secures and logs in.
func (e *Endpoint) dial(ctx context.Context) (*conn, error) { return e.dialWith(ctx, nil) }

// dialWith is dial with a handler for what the server says unasked
// (new messages while IDLE).
func (e *Endpoint) dialWith(ctx context.Context, h *imapclient.UnilateralDataHandler) (*conn, error) {
	timeout := e.Wait()
	wd := &watchdog{timeout: timeout}
	var tcp net.Conn
	raw, err := e.Settings.Dial(ctx, func(c net.Conn) net.Conn {
		tcp = c
		return watchedConn{Conn: c, w: wd}
	})
	if err != nil {
		return nil, err
	}
	// Until logged in, ctx's end or the timeout ends the attempt: a server
	// that accepts and then says nothing must not hold a poll or a stop.
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	raw.SetDeadline(time.Now().Add(timeout))
	opts := &imapclient.Options{TLSConfig: e.TLSConfig(), UnilateralDataHandler: h}
	var c *imapclient.Client
	if e.TLS == "starttls" {
		c, err = imapclient.NewStartTLS(raw, opts)
	} else {
		c = imapclient.New(raw, opts)
	}
	if err == nil {
		err = c.WaitGreeting()
	}
	if err != nil {
		raw.Close()
		return nil, err
	}
	if e.Tokens() != nil {
		if err := e.authenticate(ctx, c); err != nil {
			c.Close()
			return nil, err
		}
	} else if err := c.Login(e.Username, e.Secret()).Wait(); err != nil {
		c.Close()
		var ie *goimap.Error
		if errors.As(err, &ie) && ie.Code == goimap.ResponseCodeAuthenticationFailed {
			return nil, plugin.Permanent(fmt.Errorf("imap LOGIN: %w", err))
		}
		return nil, fmt.Errorf("imap LOGIN: %w", err)
	}
	caps := c.Caps()
	raw.SetDeadline(time.Time{})
	go wd.watch(c.Closed(), func() { tcp.Close() })
	return &conn{c: c, caps: caps, wd: wd}, nil
}

// authenticate logs in with an access token: OAUTHBEARER where the server
// offers it, else XOAUTH2. A refused token is replaced by a fresh one once;
// every failure is temporary (the messages wait; the error says to log in
// again when the token cannot be had).
func (e *Endpoint) authenticate(ctx context.Context, c *imapclient.Client) error {
	refused := func(err error) bool {
		var ie *goimap.Error
		return errors.As(err, &ie)
	}
	m, err := e.LoginOAuth(ctx, c.Caps().Has(goimap.Cap("AUTH=OAUTHBEARER")),
		func(m sasl.Mechanism) error { return c.Authenticate(saslClient{m}) }, refused)
	if !refused(err) {
		return err
	}
	if oe := sasl.OAuthRefused(m); oe != nil {
		return fmt.Errorf("imap AUTHENTICATE %s: %w (%v)", m.Name(), err, oe)
	}
	return fmt.Errorf("imap AUTHENTICATE %s: %w", m.Name(), err)
}

// saslClient is one of our mechanisms as go-imap's AUTHENTICATE wants it.
type saslClient struct{ m sasl.Mechanism }

func (s saslClient) Start() (string, []byte, error) {
	ir, err := s.m.Start()
	return s.m.Name(), ir, err
}

func (s saslClient) Next(challenge []byte) ([]byte, error) { return s.m.Next(challenge) }

// dialNotified is dial, with a channel that gets a value whenever the
// server reports, unasked, a new message count for the selected folder.
func (e *Endpoint) dialNotified(ctx context.Context) (*conn, <-chan struct{}, error) {
	news := make(chan struct{}, 1)
	c, err := e.dialWith(ctx, &imapclient.UnilateralDataHandler{
		Mailbox: func(data *imapclient.UnilateralDataMailbox) {
			if data.NumMessages != nil {
				select {
				case news <- struct{}{}:
				default:
				}
			}
		},
	})
	return c, news, err
}

// canIdle reports whether the server has IDLE.
func (c *conn) canIdle() bool { return c.caps.Has(goimap.CapIdle) || c.caps.Has(goimap.CapIMAP4rev2) }

// idle IDLEs in folder (selected) until news, ctx's end, or the
// connection's. Every recheck it also ends IDLE and looks at UIDNEXT
// itself: a server need not report mail that came between the SELECT and
// the IDLE, and go-imap's memory server does not. The library re-issues
// IDLE before 29 minutes.
func (c *conn) idle(ctx context.Context, news <-chan struct{}, folder string, seen uint32, recheck, most time.Duration) error {
	for {
		cmd, err := c.c.Idle()
		if err != nil {
			return fmt.Errorf("imap IDLE: %w", err)
		}
		t := time.NewTimer(recheck)
		select {
		case <-news:
		case <-ctx.Done():
		case <-c.c.Closed():
			t.Stop()
			return errors.New("imap IDLE: the server closed the connection")
		case <-t.C:
			end := c.wd.begin()
			err := cmd.Close()
			end()
			if err != nil {
				return fmt.Errorf("imap IDLE: %w", err)
			}
			data, err := c.selectData(folder, false)
			if err != nil {
				return err
			}
			if uint32(data.UIDNext) != seen {
				return nil
			}
			// The recheck is for a message that came between a SELECT and
			// the IDLE after it, which a server need not report; the longer
			// nothing came, the less often it is worth a SELECT (a thousand
			// idle inputs rechecking every 5 s cost 3% of a core).
			recheck = min(2*recheck, most)
			continue
		}
		t.Stop()
		return cmd.Close()
	}
}

func (c *conn) close() error {
	if c == nil || c.c == nil {
		return nil
	}
	c.c.Logout().Wait()
	return c.c.Close()
}

// mailbox is one folder as LIST gives it.
type mailbox struct {
	name  string // as the server names it (for SELECT, CREATE, APPEND)
	delim rune   // the server's hierarchy separator; 0 for none
	role  string // its SPECIAL-USE attribute (\Sent, \Drafts, \Junk, \Trash, \Archive), if any
}

// path is the folder's name as mailflow names folders whatever the server:
// levels separated by "/".
func (m mailbox) path() string { return canonical(m.name, m.delim) }

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

// roles are the SPECIAL-USE attributes (RFC 6154) that say what a folder
// is for, and that a migration maps to the destination's folder of the
// same use whatever its name ("Sent" → "Sent Items").
var roles = []goimap.MailboxAttr{goimap.MailboxAttrSent, goimap.MailboxAttrDrafts, goimap.MailboxAttrJunk,
	goimap.MailboxAttrTrash, goimap.MailboxAttrArchive}

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
// "*", with "/" between levels whatever the server's separator), but those
// matching an exclude pattern, in LIST order, each with its SPECIAL-USE.
func (c *conn) folders(patterns, exclude []string) ([]mailbox, error) {
	defer c.wd.begin()()
	var opts *goimap.ListOptions
	if c.caps.Has(goimap.CapSpecialUse) || c.caps.Has(goimap.CapIMAP4rev2) {
		opts = &goimap.ListOptions{ReturnSpecialUse: true}
	}
	delim, err := c.separator()
	if err != nil {
		return nil, err
	}
	var out []mailbox
	seen := map[string]bool{}
	for _, p := range patterns {
		list, err := c.c.List("", serverName(p, delim), opts).Collect()
		if err != nil {
			return nil, fmt.Errorf("imap LIST %q: %w", p, err)
		}
		for _, m := range list {
			mb := mailbox{name: m.Mailbox, delim: m.Delim}
			// \NonExistent (LIST-EXTENDED's answer for a parent that holds
			// nothing itself) implies \NoSelect.
			if seen[m.Mailbox] || slices.Contains(m.Attrs, goimap.MailboxAttrNoSelect) ||
				slices.Contains(m.Attrs, goimap.MailboxAttrNonExistent) || matchAny(exclude, mb.path(), '/') {
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
	}
	return out, nil
}

// matchAny reports whether name matches one of the LIST-style patterns
// ("*" matches anything, "%" anything but the delimiter).
func matchAny(patterns []string, name string, delim rune) bool {
	for _, p := range patterns {
		if match(p, name, delim) {
			return true
		}
	}
	return false
}

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

// examine selects folder (read-only unless write) and returns its
// UIDVALIDITY and how many messages it holds.
func (c *conn) examine(folder string, write bool) (uint32, uint32, error) {
	data, err := c.selectData(folder, write)
	if err != nil {
		return 0, 0, err
	}
	return data.UIDValidity, data.NumMessages, nil
}

func (c *conn) selectData(folder string, write bool) (*goimap.SelectData, error) {
	defer c.wd.begin()()
	data, err := c.c.Select(folder, &goimap.SelectOptions{ReadOnly: !write}).Wait()
	if err != nil {
		return nil, fmt.Errorf("imap SELECT %q: %w", folder, err)
	}
	c.sel = folder
	return data, nil
}

// matching lists the messages of the selected folder (n of them) that
// match criteria (nil: all), by UID SEARCH.
func (c *conn) matching(n uint32, criteria *goimap.SearchCriteria) ([]msgInfo, error) {
	defer c.wd.begin()()
	if criteria == nil || n == 0 {
		return c.messages(n)
	}
	data, err := c.c.UIDSearch(criteria, nil).Wait()
	if err != nil {
		return nil, fmt.Errorf("imap SEARCH: %w", err)
	}
	uids := data.AllUIDs()
	if len(uids) == 0 {
		return nil, nil
	}
	set := goimap.UIDSet{}
	set.AddNum(uids...)
	return c.list(set)
}

// messages lists the selected folder: UID, size, flags, INTERNALDATE.
func (c *conn) messages(n uint32) ([]msgInfo, error) {
	if n == 0 {
		return nil, nil
	}
	return c.list(goimap.SeqSet{goimap.SeqRange{Start: 1, Stop: 0}})
}

// list fetches what a listing needs of the messages in set: no identity
// (see identify), as reading the header costs the server an open of each
// message.
func (c *conn) list(set goimap.NumSet) ([]msgInfo, error) {
	return c.fetchInfo(set, false)
}

// identify is list with each message's identity (message.Identity).
func (c *conn) identify(set goimap.NumSet) ([]msgInfo, error) {
	return c.fetchInfo(set, true)
}

func (c *conn) fetchInfo(set goimap.NumSet, identity bool) ([]msgInfo, error) {
	defer c.wd.begin()()
	opts := &goimap.FetchOptions{UID: true, RFC822Size: true, Flags: true, InternalDate: true}
	if identity {
		opts.BodySection = []*goimap.FetchItemBodySection{identityFields}
	}
	msgs, err := c.c.Fetch(set, opts).Collect()
	if err != nil {
		return nil, fmt.Errorf("imap FETCH: %w", err)
	}
	out := make([]msgInfo, 0, len(msgs))
	for _, m := range msgs {
		mi := msgInfo{UID: uint32(m.UID), Size: m.RFC822Size, Date: m.InternalDate}
		if identity {
			mi.Identity = message.HeaderIdentity(m.FindBodySection(identityFields), m.RFC822Size)
		}
		for _, f := range m.Flags {
			mi.Flags = append(mi.Flags, string(f))
		}
		out = append(out, mi)
	}
	slices.SortFunc(out, func(a, b msgInfo) int { return int(a.UID) - int(b.UID) })
	return out, nil
}

// fetch streams the bodies of uids in the selected folder (BODY.PEEK[],
// so reading does not set \Seen), calling fn for each; a message the
// server no longer has is passed with an error.
func (c *conn) fetch(uids []uint32, fn func(uid uint32, r io.Reader) error) error {
	defer c.wd.begin()()
	set := goimap.UIDSet{}
	for _, u := range uids {
		set.AddNum(goimap.UID(u))
	}
	cmd := c.c.Fetch(set, &goimap.FetchOptions{UID: true, BodySection: []*goimap.FetchItemBodySection{{Peek: true}}})
	defer cmd.Close()
	for {
		m := cmd.Next()
		if m == nil {
			break
		}
		var uid uint32
		for {
			item := m.Next()
			if item == nil {
				break
			}
			switch item := item.(type) {
			case imapclient.FetchItemDataUID:
				uid = uint32(item.UID)
			case imapclient.FetchItemDataBodySection:
				// fn reads the literal, then hands the message on, which
				// may wait for a free slot: that wait is not the server's.
				lit := &handedOn{r: item.Literal, wd: c.wd}
				err := fn(uid, lit)
				lit.back()
				if err != nil {
					return err
				}
				io.Copy(io.Discard, item.Literal)
			}
		}
	}
	if err := cmd.Close(); err != nil {
		return fmt.Errorf("imap FETCH: %w", err)
	}
	return nil
}

// handedOn is a fetched literal: once it has been read to its end, the
// time until its reader returns is the client's, not the server's.
type handedOn struct {
	r    io.Reader
	wd   *watchdog
	come func()
}

func (h *handedOn) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if err == io.EOF && h.come == nil {
		h.come = h.wd.away()
	}
	return n, err
}

// back ends the time away, if it began.
func (h *handedOn) back() {
	if h.come != nil {
		h.come()
		h.come = nil
	}
}

func uidSet(uids []uint32) goimap.UIDSet {
	set := goimap.UIDSet{}
	for _, u := range uids {
		set.AddNum(goimap.UID(u))
	}
	return set
}

// addFlags sets flags on uids in the selected folder.
func (c *conn) addFlags(uids []uint32, flags ...string) error {
	defer c.wd.begin()()
	fl := make([]goimap.Flag, len(flags))
	for i, f := range flags {
		fl[i] = goimap.Flag(f)
	}
	if err := c.c.Store(uidSet(uids), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true, Flags: fl}, nil).Close(); err != nil {
		return fmt.Errorf("imap STORE: %w", err)
	}
	return nil
}

// remove deletes uids from the selected folder: \Deleted and UID EXPUNGE,
// or, without UIDPLUS, EXPUNGE (which also removes what others marked).
func (c *conn) remove(uids []uint32) error {
	defer c.wd.begin()()
	if err := c.addFlags(uids, `\Deleted`); err != nil {
		return err
	}
	if c.caps.Has(goimap.CapUIDPlus) || c.caps.Has(goimap.CapIMAP4rev2) {
		return c.c.UIDExpunge(uidSet(uids)).Close()
	}
	return c.c.Expunge().Close()
}

// move moves uids to folder: MOVE, or COPY and remove.
func (c *conn) move(uids []uint32, folder string) error {
	defer c.wd.begin()()
	if c.caps.Has(goimap.CapMove) || c.caps.Has(goimap.CapIMAP4rev2) {
		if _, err := c.c.Move(uidSet(uids), folder).Wait(); err != nil {
			return fmt.Errorf("imap MOVE: %w", err)
		}
		return nil
	}
	if _, err := c.c.Copy(uidSet(uids), folder).Wait(); err != nil {
		return fmt.Errorf("imap COPY: %w", err)
	}
	return c.remove(uids)
}

// appendMsg stores a message in folder with its flags and date; with
// UIDPLUS, the answer says where.
func (c *conn) appendMsg(folder string, flags []string, date time.Time, size int64, r io.Reader) (*goimap.AppendData, error) {
	defer c.wd.begin()()
	fl := make([]goimap.Flag, 0, len(flags))
	for _, f := range flags {
		if f != `\Recent` {
			fl = append(fl, goimap.Flag(f))
		}
	}
	cmd := c.c.Append(folder, size, &goimap.AppendOptions{Flags: fl, Time: date})
	if _, err := io.Copy(cmd, r); err != nil {
		cmd.Close()
		return nil, err
	}
	if err := cmd.Close(); err != nil {
		return nil, err
	}
	return cmd.Wait()
}

// identities counts the messages of folder by identity (message.Identity);
// a folder that does not exist holds nothing.
func (c *conn) identities(folder string) (map[string]int, error) {
	_, n, err := c.examine(folder, false)
	if err != nil {
		var ie *goimap.Error
		if errors.As(err, &ie) && ie.Type == goimap.StatusResponseTypeNo {
			return map[string]int{}, nil
		}
		return nil, err
	}
	if n == 0 {
		return map[string]int{}, nil
	}
	infos, err := c.identify(goimap.SeqSet{goimap.SeqRange{Start: 1, Stop: 0}})
	if err != nil {
		return nil, err
	}
	out := make(map[string]int, len(infos))
	for _, m := range infos {
		out[m.Identity]++
	}
	return out, nil
}

// create makes folder.
func (c *conn) create(folder string) error {
	defer c.wd.begin()()
	err := c.c.Create(folder, nil).Wait()
	var ie *goimap.Error
	if errors.As(err, &ie) && ie.Code == goimap.ResponseCodeAlreadyExists {
		return nil
	}
	return err
}

// hasMessageID reports whether folder holds a message with this Message-ID.
func (c *conn) hasMessageID(folder, id string) (bool, error) {
	defer c.wd.begin()()
	if _, _, err := c.examine(folder, false); err != nil {
		return false, err
	}
	data, err := c.c.UIDSearch(&goimap.SearchCriteria{Header: []goimap.SearchCriteriaHeaderField{{Key: "Message-Id", Value: id}}}, nil).Wait()
	if err != nil {
		return false, fmt.Errorf("imap SEARCH: %w", err)
	}
	return len(data.AllUIDs()) > 0, nil
}
