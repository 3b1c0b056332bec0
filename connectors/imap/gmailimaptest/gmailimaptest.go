// Package gmailimaptest is a fake Gmail for tests: an IMAP server, on
// go-imap's imapserver, that shows one account as Gmail does. Every
// message is in [Gmail]/All Mail once, with its labels (X-GM-LABELS) and
// its id (X-GM-MSGID); INBOX shows those labelled \Inbox, each label of
// one's own is also a folder of its name, [Gmail]/Sent Mail, Drafts,
// Starred and Important show theirs, and [Gmail]/Spam and [Gmail]/Trash
// hold what is not in All Mail; the special folders carry their
// SPECIAL-USE attribute (\All, \Sent, \Drafts, \Flagged, \Important,
// \Junk, \Trash), and the server offers X-GM-EXT-1. A message has a UID
// of its own in each folder that shows it.
//
// It can be told to misbehave as Gmail and Microsoft 365 do under load
// (Storm): answer NO [THROTTLED], answer Microsoft's "Suggested Backoff
// Time: N milliseconds", say BYE [UNAVAILABLE], or drop the connection,
// from a given point of a run on, for a given number of commands; and it
// counts what it sent (BodiesSent, Fetches), so that a test can tell a
// message fetched once from one fetched once per label.
package gmailimaptest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"
)

// The account's folders that are no label of one's own, as Gmail names
// them in English, and the one that only holds others.
const (
	AllMail   = "[Gmail]/All Mail"
	SentMail  = "[Gmail]/Sent Mail"
	Drafts    = "[Gmail]/Drafts"
	Starred   = "[Gmail]/Starred"
	Important = "[Gmail]/Important"
	Spam      = "[Gmail]/Spam"
	Trash     = "[Gmail]/Trash"
	parent    = "[Gmail]"
)

// Cap is the capability Gmail's extensions are offered by.
const Cap imap.Cap = "X-GM-EXT-1"

// Message is one message of the account.
type Message struct {
	MsgID uint64 // X-GM-MSGID; Add gives one when 0
	// Labels as X-GM-LABELS gives them: Gmail's own (\Inbox, \Sent,
	// \Draft, \Important, \Starred) and one's own ("Work/2024").
	Labels []string
	Flags  []string // IMAP flags and keywords (\Seen, $Forwarded); \Starred is \Flagged
	Date   time.Time
	Body   []byte
	// Spam and Trash: in [Gmail]/Spam or [Gmail]/Trash, and so in no
	// other folder.
	Spam, Trash bool
}

// Reply is how a fault answers.
type Reply int

const (
	// Throttled answers NO [THROTTLED], as Gmail does past its limits.
	Throttled Reply = iota
	// Backoff answers NO with Microsoft 365's "Request is throttled.
	// Suggested Backoff Time: N milliseconds" (N from Fault.Wait).
	Backoff
	// Unavailable says BYE [UNAVAILABLE] and closes the connection.
	Unavailable
	// Drop closes the connection without a word.
	Drop
)

// Fault is what the server does instead of answering a command.
type Fault struct {
	// Command is the command it hits: FETCH (a FETCH of whole messages:
	// one of flags or headers is left alone), SELECT, LIST, STATUS or
	// LOGIN.
	Command string
	// After is how many messages a FETCH sends before the fault.
	After int
	Reply Reply
	Wait  time.Duration // for Backoff
}

// storm is a fault armed once the server sent at bodies, for times
// commands.
type storm struct {
	at, times int
	f         Fault
}

// Server is the fake Gmail. Its methods may be called while it serves.
type Server struct {
	Addr           string // host:port on 127.0.0.1
	User, Password string

	mu      sync.Mutex
	msgs    map[uint64]*Message
	folders map[string]*folder
	nextID  uint64
	storms  []*storm
	bodies  int            // message bodies sent, over every session
	fetches map[uint64]int // bodies sent, by X-GM-MSGID
	faults  int            // faults served
	logins  int
}

// folder is one folder the account shows: the messages its rule takes,
// each under a UID of the folder's own, in the order they came.
type folder struct {
	name     string
	attr     imap.MailboxAttr // SPECIAL-USE
	validity uint32
	next     imap.UID
	uids     []imap.UID
	ids      []uint64 // X-GM-MSGID, by position
	holds    func(*Message) bool
}

// New starts the fake on 127.0.0.1 for user "me@gmail.com", password
// "p", stopped when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{User: "me@gmail.com", Password: "p", msgs: map[uint64]*Message{}, folders: map[string]*folder{},
		nextID: 1700000000000000000, fetches: map[uint64]int{}}
	has := func(label string) func(*Message) bool {
		return func(m *Message) bool { return !m.Spam && !m.Trash && hasFold(m.Labels, label) }
	}
	for _, f := range []*folder{
		{name: "INBOX", holds: has(`\Inbox`)},
		{name: AllMail, attr: imap.MailboxAttrAll, holds: func(m *Message) bool { return !m.Spam && !m.Trash }},
		{name: SentMail, attr: imap.MailboxAttrSent, holds: has(`\Sent`)},
		{name: Drafts, attr: imap.MailboxAttrDrafts, holds: has(`\Draft`)},
		{name: Starred, attr: imap.MailboxAttrFlagged, holds: has(`\Starred`)},
		{name: Important, attr: imap.MailboxAttrImportant, holds: has(`\Important`)},
		{name: Spam, attr: imap.MailboxAttrJunk, holds: func(m *Message) bool { return m.Spam }},
		{name: Trash, attr: imap.MailboxAttrTrash, holds: func(m *Message) bool { return m.Trash && !m.Spam }},
	} {
		s.addFolder(f)
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &session{s: s, conn: c}, nil, nil
		},
		Caps: imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapLiteralPlus: {}, imap.CapSpecialUse: {}, imap.CapNamespace: {},
			imap.CapUIDPlus: {}, Cap: {}},
		InsecureAuth: true,
		Logger:       silent{},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	s.Addr = ln.Addr().String()
	return s
}

type silent struct{}

func (silent) Printf(string, ...any) {}

func (s *Server) addFolder(f *folder) {
	f.validity = uint32(len(s.folders) + 1)
	f.next = 1
	s.folders[f.name] = f
}

// labelFolder is the folder of a label of one's own, made at its first
// use; nil for Gmail's own labels.
func (s *Server) labelFolder(label string) *folder {
	if strings.HasPrefix(label, `\`) || strings.EqualFold(label, "INBOX") {
		return nil
	}
	if f := s.folders[label]; f != nil {
		return f
	}
	f := &folder{name: label, holds: func(m *Message) bool { return !m.Spam && !m.Trash && slices.Contains(m.Labels, label) }}
	s.addFolder(f)
	return f
}

// Add puts messages into the account, each shown in the folders its
// labels name; a message without MsgID is given one. It returns their
// ids.
func (s *Server) Add(msgs ...Message) []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]uint64, len(msgs))
	for i, m := range msgs {
		m := m
		m.Labels, m.Flags = slices.Clone(m.Labels), slices.Clone(m.Flags)
		if m.MsgID == 0 {
			s.nextID += 16
			m.MsgID = s.nextID
		}
		if m.Date.IsZero() {
			m.Date = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		starred(&m)
		s.msgs[m.MsgID] = &m
		s.place(&m)
		ids[i] = m.MsgID
	}
	return ids
}

// starred keeps \Starred and \Flagged together, as Gmail does.
func starred(m *Message) {
	switch l, f := hasFold(m.Labels, `\Starred`), hasFold(m.Flags, `\Flagged`); {
	case l && !f:
		m.Flags = append(m.Flags, `\Flagged`)
	case f && !l:
		m.Labels = append(m.Labels, `\Starred`)
	}
}

// Label adds label to the message id (AddLabel) or, with remove, takes
// it away, and shows the message where its labels now say.
func (s *Server) Label(id uint64, label string, remove bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.msgs[id]
	if m == nil {
		return
	}
	if remove {
		m.Labels = slices.DeleteFunc(m.Labels, func(l string) bool { return l == label })
	} else if !slices.Contains(m.Labels, label) {
		m.Labels = append(m.Labels, label)
	}
	s.place(m)
}

// place shows m in each folder whose rule takes it, and in no other.
func (s *Server) place(m *Message) {
	for _, l := range m.Labels {
		s.labelFolder(l)
	}
	for _, f := range s.folders {
		at := slices.Index(f.ids, m.MsgID)
		switch holds := f.holds(m); {
		case holds && at < 0:
			f.uids, f.ids = append(f.uids, f.next), append(f.ids, m.MsgID)
			f.next++
		case !holds && at >= 0:
			f.uids, f.ids = slices.Delete(f.uids, at, at+1), slices.Delete(f.ids, at, at+1)
		}
	}
}

// Messages are the account's messages, in no order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, 0, len(s.msgs))
	for _, m := range s.msgs {
		c := *m
		c.Labels, c.Flags = slices.Clone(m.Labels), slices.Clone(m.Flags)
		out = append(out, c)
	}
	return out
}

// Storm arms a fault: once the server has sent at message bodies in all,
// each of the next times commands that f names gets f instead of an
// answer. Storms armed at once take turns in the order they were made.
func (s *Server) Storm(at, times int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f.Command = strings.ToUpper(f.Command)
	s.storms = append(s.storms, &storm{at: at, times: times, f: f})
}

// Calm reports whether every storm has blown over, and how many faults
// the server served.
func (s *Server) Calm() (bool, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !slices.ContainsFunc(s.storms, func(st *storm) bool { return st.times > 0 }), s.faults
}

// BodiesSent is how many message bodies the server sent, over every
// session; Fetches how many times each message's body was sent, by
// X-GM-MSGID; Logins how many sessions logged in.
func (s *Server) BodiesSent() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bodies
}

func (s *Server) Fetches() map[uint64]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[uint64]int, len(s.fetches))
	for id, n := range s.fetches {
		out[id] = n
	}
	return out
}

func (s *Server) Logins() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins
}

// fault takes the fault due for command now, if one is; s.mu is held.
func (s *Server) fault(command string) *Fault {
	for len(s.storms) > 0 && s.storms[0].times <= 0 {
		s.storms = s.storms[1:]
	}
	if len(s.storms) == 0 {
		return nil
	}
	st := s.storms[0]
	if s.bodies < st.at || st.f.Command != command {
		return nil
	}
	st.times--
	s.faults++
	f := st.f
	return &f
}

// session is one connection's session.
type session struct {
	s    *Server
	conn *imapserver.Conn
	sel  *folder
}

var _ imapserver.SessionNamespace = (*session)(nil)

// answer is what the session says for fault f: the error a command
// returns (the connection closed first for Unavailable and Drop).
func (ss *session) answer(f *Fault) error {
	switch f.Reply {
	case Backoff:
		return &imap.Error{Type: imap.StatusResponseTypeNo,
			Text: fmt.Sprintf("Request is throttled. Suggested Backoff Time: %d milliseconds", f.Wait.Milliseconds())}
	case Unavailable:
		ss.conn.Bye("[UNAVAILABLE] Temporary System Error")
		return io.ErrUnexpectedEOF
	case Drop:
		ss.conn.NetConn().Close()
		return io.ErrUnexpectedEOF
	}
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "THROTTLED", Text: "Account exceeded command or bandwidth limits. (Failure)"}
}

// check answers a fault due for command, if one is.
func (ss *session) check(command string) error {
	ss.s.mu.Lock()
	f := ss.s.fault(command)
	ss.s.mu.Unlock()
	if f == nil {
		return nil
	}
	return ss.answer(f)
}

func (ss *session) Close() error { return nil }

func (ss *session) Login(user, password string) error {
	if err := ss.check("LOGIN"); err != nil {
		return err
	}
	if user != ss.s.User || password != ss.s.Password {
		return imapserver.ErrAuthFailed
	}
	ss.s.mu.Lock()
	ss.s.logins++
	ss.s.mu.Unlock()
	return nil
}

func (ss *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: '/'}}}, nil
}

func (ss *session) folder(name string) (*folder, error) {
	if strings.EqualFold(name, "INBOX") {
		name = "INBOX"
	}
	f := ss.s.folders[name]
	if f == nil {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "Unknown Mailbox: " + name + " (Failure)"}
	}
	return f, nil
}

func (ss *session) Select(name string, _ *imap.SelectOptions) (*imap.SelectData, error) {
	if err := ss.check("SELECT"); err != nil {
		return nil, err
	}
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	f, err := ss.folder(name)
	if err != nil {
		return nil, err
	}
	ss.sel = f
	return &imap.SelectData{
		Flags:          []imap.Flag{imap.FlagAnswered, imap.FlagFlagged, imap.FlagDraft, imap.FlagDeleted, imap.FlagSeen, "$Forwarded"},
		PermanentFlags: []imap.Flag{imap.FlagAnswered, imap.FlagFlagged, imap.FlagDraft, imap.FlagDeleted, imap.FlagSeen, imap.FlagWildcard},
		NumMessages:    uint32(len(f.uids)), UIDNext: f.next, UIDValidity: f.validity,
	}, nil
}

func (ss *session) Unselect() error { ss.sel = nil; return nil }

func (ss *session) Create(name string, _ *imap.CreateOptions) error {
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	if ss.s.folders[name] != nil || strings.HasPrefix(name, parent) {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "Duplicate folder name " + name + " (Failure)"}
	}
	ss.s.labelFolder(name)
	return nil
}

func (ss *session) refuse(what string) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Text: what + " is not in this fake (Failure)"}
}

func (ss *session) Delete(string) error                              { return ss.refuse("DELETE") }
func (ss *session) Rename(string, string, *imap.RenameOptions) error { return ss.refuse("RENAME") }
func (ss *session) Subscribe(string) error                           { return nil }
func (ss *session) Unsubscribe(string) error                         { return nil }

func (ss *session) List(w *imapserver.ListWriter, ref string, patterns []string, opts *imap.ListOptions) error {
	if err := ss.check("LIST"); err != nil {
		return err
	}
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	if len(patterns) == 1 && patterns[0] == "" {
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: '/'})
	}
	names := []string{parent}
	for name := range ss.s.folders {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !slices.ContainsFunc(patterns, func(p string) bool { return imapserver.MatchList(name, '/', ref, p) }) {
			continue
		}
		data := &imap.ListData{Mailbox: name, Delim: '/'}
		if name == parent {
			data.Attrs = []imap.MailboxAttr{imap.MailboxAttrNoSelect, imap.MailboxAttrHasChildren}
		} else if f := ss.s.folders[name]; f.attr != "" {
			data.Attrs = []imap.MailboxAttr{imap.MailboxAttrHasNoChildren, f.attr}
		}
		if opts != nil && opts.ReturnStatus != nil && name != parent {
			data.Status = ss.status(ss.s.folders[name])
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

// status is a folder's STATUS; s.mu is held.
func (ss *session) status(f *folder) *imap.StatusData {
	n, unseen := uint32(len(f.ids)), uint32(0)
	for _, id := range f.ids {
		if !hasFold(ss.s.msgs[id].Flags, `\Seen`) {
			unseen++
		}
	}
	return &imap.StatusData{Mailbox: f.name, NumMessages: &n, NumUnseen: &unseen, UIDNext: f.next, UIDValidity: f.validity}
}

func (ss *session) Status(name string, _ *imap.StatusOptions) (*imap.StatusData, error) {
	if err := ss.check("STATUS"); err != nil {
		return nil, err
	}
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	f, err := ss.folder(name)
	if err != nil {
		return nil, err
	}
	return ss.status(f), nil
}

// Append adds a message, labelled after the folder it is put in.
func (ss *session) Append(name string, r imap.LiteralReader, opts *imap.AppendOptions) (*imap.AppendData, error) {
	body, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	ss.s.mu.Lock()
	f, err := ss.folder(name)
	ss.s.mu.Unlock()
	if err != nil {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "Folder doesn't exist. (Failure)"}
	}
	m := Message{Body: body, Date: opts.Time}
	for _, fl := range opts.Flags {
		m.Flags = append(m.Flags, string(fl))
	}
	switch f.name {
	case "INBOX":
		m.Labels = []string{`\Inbox`}
	case SentMail:
		m.Labels = []string{`\Sent`}
	case Drafts:
		m.Labels = []string{`\Draft`}
	case Spam:
		m.Spam = true
	case Trash:
		m.Trash = true
	case AllMail, Starred, Important:
	default:
		m.Labels = []string{f.name}
	}
	id := ss.s.Add(m)[0]
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	return &imap.AppendData{UIDValidity: f.validity, UID: f.uids[slices.Index(f.ids, id)]}, nil
}

func (ss *session) Poll(*imapserver.UpdateWriter, bool) error { return nil }

func (ss *session) Idle(_ *imapserver.UpdateWriter, stop <-chan struct{}) error {
	<-stop
	return nil
}

// at is the messages of the selected folder that set names, with their
// sequence numbers; s.mu is held.
func (ss *session) at(set imap.NumSet) (seqs []uint32, msgs []*Message) {
	f := ss.sel
	for i, uid := range f.uids {
		seq := uint32(i + 1)
		var in bool
		switch set := set.(type) {
		case imap.UIDSet:
			in = set.Contains(uid)
		case imap.SeqSet:
			in = set.Contains(seq) || seqStar(set, seq, uint32(len(f.uids)))
		}
		if in {
			seqs, msgs = append(seqs, seq), append(msgs, ss.s.msgs[f.ids[i]])
		}
	}
	return seqs, msgs
}

// seqStar reports whether seq, the last message, is named by a "*".
func seqStar(set imap.SeqSet, seq, last uint32) bool {
	if seq != last {
		return false
	}
	for _, r := range set {
		if r.Stop == 0 || r.Start == 0 {
			return true
		}
	}
	return false
}

func (ss *session) Fetch(w *imapserver.FetchWriter, set imap.NumSet, opts *imap.FetchOptions) error {
	// A whole message's body, not a header a listing reads.
	bodies := slices.ContainsFunc(opts.BodySection, func(b *imap.FetchItemBodySection) bool {
		return b.Specifier == imap.PartSpecifierNone && len(b.Part) == 0 && b.Partial == nil
	})
	ss.s.mu.Lock()
	seqs, msgs := ss.at(set)
	var f *Fault
	if bodies {
		f = ss.s.fault("FETCH")
	}
	ss.s.mu.Unlock()
	for i, m := range msgs {
		if f != nil && i == f.After {
			return ss.answer(f)
		}
		ss.s.mu.Lock()
		uid := ss.sel.uids[slices.Index(ss.sel.ids, m.MsgID)]
		c := *m
		c.Labels, c.Flags = slices.Clone(m.Labels), slices.Clone(m.Flags)
		if bodies {
			ss.s.bodies++
			ss.s.fetches[m.MsgID]++
			if !slices.ContainsFunc(opts.BodySection, func(b *imap.FetchItemBodySection) bool { return b.Peek }) && !hasFold(m.Flags, `\Seen`) {
				m.Flags = append(m.Flags, `\Seen`)
			}
		}
		ss.s.mu.Unlock()
		if err := write(w.CreateMessage(seqs[i]), uid, &c, opts); err != nil {
			return err
		}
	}
	if f != nil && f.After >= len(msgs) {
		return ss.answer(f)
	}
	return nil
}

// write writes one message's FETCH response.
func write(rw *imapserver.FetchResponseWriter, uid imap.UID, m *Message, opts *imap.FetchOptions) error {
	rw.WriteUID(uid)
	if opts.Flags {
		rw.WriteFlags(flags(m.Flags))
	}
	if opts.InternalDate {
		rw.WriteInternalDate(m.Date)
	}
	if opts.RFC822Size {
		rw.WriteRFC822Size(int64(len(m.Body)))
	}
	if opts.GmailMsgID {
		rw.WriteGmailMsgID(m.MsgID)
	}
	if opts.GmailLabels {
		rw.WriteGmailLabels(m.Labels)
	}
	if opts.Envelope {
		if h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(m.Body))); err == nil {
			rw.WriteEnvelope(imapserver.ExtractEnvelope(h))
		}
	}
	for _, bs := range opts.BodySection {
		b := imapserver.ExtractBodySection(bytes.NewReader(m.Body), bs)
		wc := rw.WriteBodySection(bs, int64(len(b)))
		_, err := wc.Write(b)
		if cerr := wc.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return rw.Close()
}

func flags(fs []string) []imap.Flag {
	out := make([]imap.Flag, len(fs))
	for i, f := range fs {
		out[i] = imap.Flag(f)
	}
	return out
}

func (ss *session) Search(kind imapserver.NumKind, c *imap.SearchCriteria, _ *imap.SearchOptions) (*imap.SearchData, error) {
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	var uids imap.UIDSet
	var seqs imap.SeqSet
	for i, uid := range ss.sel.uids {
		if matches(ss.s.msgs[ss.sel.ids[i]], uid, uint32(i+1), c) {
			uids.AddNum(uid)
			seqs.AddNum(uint32(i + 1))
		}
	}
	if kind == imapserver.NumKindUID {
		return &imap.SearchData{All: uids}, nil
	}
	return &imap.SearchData{All: seqs}, nil
}

// matches is the little of SEARCH mailflow asks: UIDs, sequence numbers,
// dates, flags, sizes, header fields, NOT and OR.
func matches(m *Message, uid imap.UID, seq uint32, c *imap.SearchCriteria) bool {
	day := func(t time.Time) time.Time { return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC) }
	for _, set := range c.UID {
		if !set.Contains(uid) {
			return false
		}
	}
	for _, set := range c.SeqNum {
		if !set.Contains(seq) {
			return false
		}
	}
	switch {
	case !c.Since.IsZero() && day(m.Date).Before(day(c.Since)),
		!c.Before.IsZero() && !day(m.Date).Before(day(c.Before)),
		c.Larger > 0 && int64(len(m.Body)) <= c.Larger,
		c.Smaller > 0 && int64(len(m.Body)) >= c.Smaller:
		return false
	}
	for _, f := range c.Flag {
		if !hasFold(m.Flags, string(f)) {
			return false
		}
	}
	for _, f := range c.NotFlag {
		if hasFold(m.Flags, string(f)) {
			return false
		}
	}
	if len(c.Header) > 0 {
		h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(m.Body)))
		if err != nil {
			return false
		}
		for _, f := range c.Header {
			if !strings.Contains(strings.ToLower(h.Get(f.Key)), strings.ToLower(f.Value)) {
				return false
			}
		}
	}
	for _, not := range c.Not {
		if matches(m, uid, seq, &not) {
			return false
		}
	}
	for _, or := range c.Or {
		if !matches(m, uid, seq, &or[0]) && !matches(m, uid, seq, &or[1]) {
			return false
		}
	}
	return true
}

func (ss *session) Store(w *imapserver.FetchWriter, set imap.NumSet, store *imap.StoreFlags, _ *imap.StoreOptions) error {
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	seqs, msgs := ss.at(set)
	for i, m := range msgs {
		switch store.Op {
		case imap.StoreFlagsSet:
			m.Flags = nil
			fallthrough
		case imap.StoreFlagsAdd:
			for _, f := range store.Flags {
				if !hasFold(m.Flags, string(f)) {
					m.Flags = append(m.Flags, string(f))
				}
			}
		case imap.StoreFlagsDel:
			m.Flags = slices.DeleteFunc(m.Flags, func(f string) bool {
				return slices.ContainsFunc(store.Flags, func(g imap.Flag) bool { return strings.EqualFold(f, string(g)) })
			})
		}
		if !store.Silent {
			rw := w.CreateMessage(seqs[i])
			rw.WriteUID(ss.sel.uids[slices.Index(ss.sel.ids, m.MsgID)])
			rw.WriteFlags(flags(m.Flags))
			if err := rw.Close(); err != nil {
				return err
			}
		}
	}
	return nil
}

// Expunge removes what is marked \Deleted from the selected folder as
// Gmail does: from a label's folder (INBOX too) it takes the label away,
// from All Mail it moves the message to the Trash.
func (ss *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	f := ss.sel
	var gone []*Message
	for i := len(f.uids) - 1; i >= 0; i-- {
		m := ss.s.msgs[f.ids[i]]
		if !hasFold(m.Flags, `\Deleted`) || uids != nil && !uids.Contains(f.uids[i]) {
			continue
		}
		if err := w.WriteExpunge(uint32(i + 1)); err != nil {
			return err
		}
		gone = append(gone, m)
	}
	for _, m := range gone {
		m.Flags = slices.DeleteFunc(m.Flags, func(fl string) bool { return strings.EqualFold(fl, `\Deleted`) })
		switch f.name {
		case AllMail:
			m.Trash = true
		case "INBOX":
			m.Labels = slices.DeleteFunc(m.Labels, func(l string) bool { return strings.EqualFold(l, `\Inbox`) })
		default:
			m.Labels = slices.DeleteFunc(m.Labels, func(l string) bool { return l == f.name })
		}
		ss.s.place(m)
	}
	return nil
}

// Copy into a label's folder labels the messages.
func (ss *session) Copy(set imap.NumSet, dest string) (*imap.CopyData, error) {
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	to, err := ss.folder(dest)
	if err != nil || to.attr != "" {
		return nil, ss.refuse("COPY to " + dest)
	}
	_, msgs := ss.at(set)
	data := &imap.CopyData{UIDValidity: to.validity}
	for _, m := range msgs {
		data.SourceUIDs.AddNum(ss.sel.uids[slices.Index(ss.sel.ids, m.MsgID)])
		label := to.name
		if label == "INBOX" {
			label = `\Inbox`
		}
		if !slices.Contains(m.Labels, label) {
			m.Labels = append(m.Labels, label)
		}
		ss.s.place(m)
		data.DestUIDs.AddNum(to.uids[slices.Index(to.ids, m.MsgID)])
	}
	return data, nil
}

func hasFold(xs []string, x string) bool {
	return slices.ContainsFunc(xs, func(y string) bool { return strings.EqualFold(x, y) })
}

// sampleLabels are the labels Sample gives, in turn: Gmail's inbox and
// sent mail, and labels of one's own, nested, with a space, and
// non-ASCII.
var sampleLabels = []string{`\Inbox`, "Work", `\Sent`, "Work/2024", "Reçus", "Family", "a b", "Lists/go"}

// sampleCounts is how many of sampleLabels each message has in turn: 3
// on average.
var sampleCounts = []int{3, 2, 4, 3, 3, 1, 5, 3, 2, 4}

// Sample is n messages as a Gmail account holds them: each with 3 of the
// labels above on average (every 50th with none: archived; every 97th a
// draft only), every 3rd \Important, every 7th \Starred, most \Seen, some
// \Answered or $Forwarded; every 40th in Spam and every 45th in the Trash
// besides; every 100th without a Message-ID. Their sizes vary from a few
// hundred bytes to some 20 KB. The same n gives the same messages.
func Sample(n int) []Message {
	out := make([]Message, n)
	for i := range out {
		m := &out[i]
		m.Date = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * 7 * time.Hour)
		switch {
		case i%50 == 49:
		case i%97 == 96:
			m.Labels = []string{`\Draft`}
		default:
			for k := range sampleCounts[i%len(sampleCounts)] {
				m.Labels = append(m.Labels, sampleLabels[(i+k*3)%len(sampleLabels)])
			}
		}
		if i%3 == 0 {
			m.Labels = append(m.Labels, `\Important`)
		}
		if i%7 == 0 {
			m.Labels = append(m.Labels, `\Starred`)
		}
		if i%4 != 0 {
			m.Flags = append(m.Flags, `\Seen`)
		}
		if i%10 == 0 {
			m.Flags = append(m.Flags, `\Answered`)
		}
		if i%13 == 0 {
			m.Flags = append(m.Flags, "$Forwarded")
		}
		m.Spam, m.Trash = i%40 == 39, i%45 == 44
		var b strings.Builder
		if i%100 != 99 {
			fmt.Fprintf(&b, "Message-ID: <gm-%d@example.test>\r\n", i)
		}
		fmt.Fprintf(&b, "Date: %s\r\nFrom: Sender %d <s%d@example.test>\r\nTo: me@gmail.com\r\nSubject: message %d of the sample\r\n\r\n",
			m.Date.Format(time.RFC1123Z), i%17, i%17, i)
		for l := range 5 + (i*37)%300 {
			fmt.Fprintf(&b, "line %d of message %d, the quick brown fox jumps over the lazy dog\r\n", l, i)
		}
		m.Body = []byte(b.String())
	}
	return out
}
