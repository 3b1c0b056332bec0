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
	c           *imapclient.Client
	caps        goimap.CapSet
	sel         string    // the selected folder
	selValidity uint32    // its UIDVALIDITY
	wd          *watchdog // every command below runs under it
	ns          *names    // how the server writes folder names, once asked
	// dialTook is how long connecting and logging in took, and rtt how
	// long the NAMESPACE answer took to come (0 until asked): a round
	// trip, the server having next to nothing to do. They say whether
	// another session is worth its login (sessionsWorth).
	dialTook, rtt time.Duration
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
	start := time.Now()
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
		// go-imap does the handshake: its certificate errors are put in
		// the words the endpoint's own handshakes use.
		if c, err = imapclient.NewStartTLS(raw, opts); err != nil {
			err = e.TLSWords(err)
		}
	} else {
		c = imapclient.New(raw, opts)
	}
	if err == nil {
		err = c.WaitGreeting()
	}
	if err != nil {
		raw.Close()
		return nil, throttled(err) // a greeting may be "* BYE [UNAVAILABLE]"
	}
	if e.Tokens() != nil {
		if err := e.authenticate(ctx, c); err != nil {
			c.Close()
			return nil, throttled(err)
		}
	} else if err := c.Login(e.Username, e.Secret()).Wait(); err != nil {
		c.Close()
		var ie *goimap.Error
		if errors.As(err, &ie) && ie.Code == goimap.ResponseCodeAuthenticationFailed {
			return nil, plugin.Permanent(fmt.Errorf("imap LOGIN: %w", err))
		}
		return nil, throttled(fmt.Errorf("imap LOGIN: %w", err))
	}
	caps := c.Caps()
	if caps.Has(goimap.CapUTF8Accept) {
		// Folder names then go both ways as UTF-8 rather than modified
		// UTF-7 (RFC 6855); go-imap reads both. A server that says it
		// takes UTF-8 and then refuses the ENABLE is spoken to in UTF-7.
		c.Enable(goimap.CapUTF8Accept).Wait()
	}
	raw.SetDeadline(time.Time{})
	go wd.watch(c.Closed(), func() { tcp.Close() })
	return &conn{c: c, caps: caps, wd: wd, dialTook: time.Since(start)}, nil
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

// open reports whether the session may still be used: the server has
// neither closed it nor said BYE.
func (c *conn) open() bool {
	select {
	case <-c.c.Closed():
		return false
	default:
		return c.c.State() != goimap.ConnStateLogout
	}
}

// condStore reports whether the server keeps a modification sequence
// per message (CONDSTORE, RFC 7162; QRESYNC implies it).
func (c *conn) condStore() bool {
	return c.caps.Has(goimap.CapCondStore) || c.caps.Has(goimap.CapQResync)
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
	return c.selectWith(folder, &goimap.SelectOptions{ReadOnly: !write})
}

// selectFolder selects folder for a listing: read-only, and with CONDSTORE
// where the server has it, so that the answer says its HIGHESTMODSEQ.
func (c *conn) selectFolder(folder string) (*goimap.SelectData, error) {
	return c.selectWith(folder, c.listingSelect())
}

// listingSelect is how selectFolder selects.
func (c *conn) listingSelect() *goimap.SelectOptions {
	return &goimap.SelectOptions{ReadOnly: true, CondStore: c.condStore()}
}

func (c *conn) selectWith(folder string, opts *goimap.SelectOptions) (*goimap.SelectData, error) {
	return c.selectThen(folder, opts, nil)
}

// selectThen selects folder as selectWith does and sends, right behind the
// SELECT and without waiting for its answer, what read sends (nil: none):
// the two cost one round trip, not two, which over a 50 ms link is most of
// what a pass that changes little takes. Only a read may go out so (a
// FETCH, a SEARCH). Were the SELECT refused, no folder would be selected
// (RFC 3501, 6.3.1) and the read would fail rather than read another
// folder; and a read acts on nothing the SELECT answers (a UIDVALIDITY
// that changed, which the caller checks before using what it read), while
// a write must wait for it. The caller takes the read's answer whatever
// the SELECT's, so that the session goes on reading.
func (c *conn) selectThen(folder string, opts *goimap.SelectOptions, read func()) (*goimap.SelectData, error) {
	defer c.wd.begin()()
	cmd := c.c.Select(folder, opts)
	if read != nil {
		read()
	}
	data, err := cmd.Wait()
	if err != nil {
		c.sel = "" // a refused SELECT leaves none selected (RFC 3501, 6.3.1)
		return nil, fmt.Errorf("imap SELECT %q: %w", folder, err)
	}
	c.sel, c.selValidity = folder, data.UIDValidity
	return data, nil
}

// selected reports whether folder is the one selected, as a successful
// SELECT or EXAMINE left it, with its UIDVALIDITY and how many messages
// it holds now (the server's EXISTS and EXPUNGE since counted in).
func (c *conn) selected(folder string) (validity, held uint32, ok bool) {
	mb := c.c.Mailbox()
	if c.sel != folder || mb == nil || mb.Name != folder {
		return 0, 0, false
	}
	return c.selValidity, mb.NumMessages, true
}

// matching lists the messages of the selected folder (n of them) that
// match criteria (nil: all), by UID SEARCH.
func (c *conn) matching(n uint32, criteria *goimap.SearchCriteria) ([]msgInfo, error) {
	return c.matchingWith(n, criteria, c.list)
}

// matchingWith is matching with list to fetch what is wanted of them.
func (c *conn) matchingWith(n uint32, criteria *goimap.SearchCriteria, list func(goimap.NumSet) ([]msgInfo, error)) ([]msgInfo, error) {
	defer c.wd.begin()()
	if n == 0 {
		return nil, nil
	}
	if criteria == nil {
		return list(goimap.SeqSet{goimap.SeqRange{Start: 1, Stop: 0}})
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
	return list(set)
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
	return c.fetchInfoWith(set, &goimap.FetchOptions{UID: true, RFC822Size: true, Flags: true, InternalDate: true})
}

// identify lists the messages in set with each one's identity
// (message.Identity), size and flags: what finding a copy and comparing
// flags need. Not the INTERNALDATE a listing has: decoding it (time.Parse)
// was a tenth of the CPU of a pass that inventories a destination folder.
func (c *conn) identify(set goimap.NumSet) ([]msgInfo, error) {
	return c.infoOf(c.identifyCmd(set), true)
}

// identifyCmd sends identify's FETCH; infoOf takes in its answer.
func (c *conn) identifyCmd(set goimap.NumSet) *imapclient.FetchCommand {
	return c.c.Fetch(set, &goimap.FetchOptions{UID: true, RFC822Size: true, Flags: true,
		BodySection: []*goimap.FetchItemBodySection{identityFields}})
}

// changedCmd asks for the messages of the selected folder whose flags
// changed, or that came, since the modification sequence since (UID FETCH
// 1:* (...) (CHANGEDSINCE since), RFC 7162), each with its identity's
// header fields; infoOf(cmd, true) takes in the answer. A message whose
// flags changed is named by its identity to find its copies: asked here,
// that costs a few hundred bytes a changed message, where asking after
// the listing (Identify) cost a SELECT and a FETCH more per folder.
func (c *conn) changedCmd(since uint64) *imapclient.FetchCommand {
	return c.c.Fetch(goimap.UIDSet{goimap.UIDRange{Start: 1, Stop: 0}},
		&goimap.FetchOptions{UID: true, RFC822Size: true, Flags: true, InternalDate: true, ChangedSince: since,
			BodySection: []*goimap.FetchItemBodySection{identityFields}})
}

func (c *conn) fetchInfoWith(set goimap.NumSet, opts *goimap.FetchOptions) ([]msgInfo, error) {
	return c.infoOf(c.c.Fetch(set, opts), len(opts.BodySection) > 0)
}

// infoOf takes in the answer to a FETCH of listing items (identity: with
// the identity's header fields).
func (c *conn) infoOf(cmd *imapclient.FetchCommand, identity bool) ([]msgInfo, error) {
	defer c.wd.begin()()
	// Each message's data is taken in as it comes, not collected for the
	// whole folder first (FetchCommand.Collect): with the header fields of
	// an identity that is a kilobyte a message, held until the last.
	defer cmd.Close()
	var out []msgInfo
	for {
		next := cmd.Next()
		if next == nil {
			break
		}
		m, err := next.Collect()
		if err != nil {
			return nil, fmt.Errorf("imap FETCH: %w", err)
		}
		mi := msgInfo{UID: uint32(m.UID), Size: m.RFC822Size, Date: m.InternalDate}
		if identity {
			mi.Identity = message.HeaderIdentity(m.FindBodySection(identityFields), m.RFC822Size)
		}
		// Known, so never nil; \Recent is this session's, not the message's.
		mi.Flags = make([]string, 0, len(m.Flags))
		for _, f := range m.Flags {
			if !strings.EqualFold(string(f), `\Recent`) {
				mi.Flags = append(mi.Flags, string(f))
			}
		}
		out = append(out, mi)
	}
	if err := cmd.Close(); err != nil {
		return nil, fmt.Errorf("imap FETCH: %w", err)
	}
	slices.SortFunc(out, func(a, b msgInfo) int { return int(a.UID) - int(b.UID) })
	return out, nil
}

// fetch streams the bodies of uids in the selected folder (BODY.PEEK[],
// so reading does not set \Seen), calling fn for each; a message the
// server no longer has is passed with an error.
func (c *conn) fetch(uids []uint32, fn func(uid uint32, r io.Reader) error) error {
	return c.bodies(c.bodiesCmd(uids), fn)
}

// bodiesCmd sends fetch's FETCH; bodies streams its answer.
func (c *conn) bodiesCmd(uids []uint32) *imapclient.FetchCommand {
	return c.c.Fetch(uidSet(uids), &goimap.FetchOptions{UID: true, BodySection: []*goimap.FetchItemBodySection{{Peek: true}}})
}

// bodies is fetch's second half: it hands on each body cmd brings.
func (c *conn) bodies(cmd *imapclient.FetchCommand, fn func(uid uint32, r io.Reader) error) error {
	defer c.wd.begin()()
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
