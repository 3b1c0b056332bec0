package imap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"sync/atomic"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"github.com/mailflow/mailflow/connectors/internal/rate"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
)

// Output stores messages in an IMAP mailbox. Its exported fields are its
// config.
type Output struct {
	Endpoint
	// Folder is where a message goes that came from no folder (POP3, a
	// Maildir's new/ and cur/); default INBOX.
	Folder string `toml:"folder"`
	// FolderMap renames source folders: "Sent" = "Sent Items", and
	// "Archive/*" = "Old/*" for a folder and everything below it, "*" =
	// "Old/*" for every folder.
	FolderMap map[string]string `toml:"folder_map"`
	// KeepFlags and KeepDate: store the source's flags and date (default).
	// KeepFlags also carries later flag changes at the source.
	KeepFlags      *bool `toml:"keep_flags"`
	KeepDate       *bool `toml:"keep_date"`
	MaxConnections int   `toml:"max_connections"`
	// AppendWindow is how many APPENDs may be in flight at once on one
	// session, where the server has LITERAL+ (else one). Default 8.
	AppendWindow int `toml:"append_window"`
	// SkipExisting: a message whose identity (its Message-ID, or a digest
	// of Date, From, Subject and size) the target folder already holds is
	// not appended again, as many times as the folder holds it. For
	// migrations: a run with a fresh ledger, or on another machine, adds
	// nothing twice. Each folder is read once, when first delivered to.
	SkipExisting bool `toml:"skip_existing"`
	// AddMessageID gives a message without a Message-ID one on its way in,
	// made from its Date, From, Subject and size (imapsync's --addheader),
	// so that it can be found again.
	AddMessageID bool `toml:"add_message_id"`
	// MaxBytesPerSecond paces uploads to that many bytes a second on
	// average, MaxBytesPerDay to that many a day (0: no bound).
	MaxBytesPerSecond int64 `toml:"max_bytes_per_second"`
	MaxBytesPerDay    int64 `toml:"max_bytes_per_day"`
	// Rate stores at most that many messages a second, minute or hour
	// ("10/s", "600/m"): providers that count an account's messages.
	Rate string `toml:"rate"`
	// SyncDeletes: a message deleted at the source after it was delivered
	// (a source that keeps its mail) is deleted here too.
	SyncDeletes bool `toml:"sync_deletes"`

	lanes  *lanes
	held   heldIndex
	layout layout
	pace   *pace
	day    *dayBudget
	rate   *rate.Limiter
	there  atomic.Int64 // messages found at the destination and not appended
}

// SampleConfig returns the documented sample config of both plugins.
func (*Output) SampleConfig() string { return sampleConfig }

// Provision implements plugin.Provisioner.
func (o *Output) Provision(env plugin.Env) error {
	o.provision(env)
	return nil
}

// defaultAppendWindow is how many APPENDs a session carries at once unless
// the config says otherwise; measured on Dovecot (see the commit that set
// it): past it a migration is no faster.
const defaultAppendWindow = 8

// Init implements plugin.Initializer.
func (o *Output) Init() error {
	if o.Folder == "" {
		o.Folder = "INBOX"
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = 4
	}
	if o.AppendWindow <= 0 {
		o.AppendWindow = defaultAppendWindow
	}
	if o.MaxBytesPerSecond < 0 || o.MaxBytesPerDay < 0 {
		return fmt.Errorf("max_bytes_per_second and max_bytes_per_day must not be negative")
	}
	for from := range o.FolderMap {
		if strings.Contains(strings.TrimSuffix(from, "/*"), "*") && from != "*" || strings.Contains(from, "%") {
			return fmt.Errorf(`folder_map: %q: a wildcard may only end a name ("Archive/*") or be the whole of it ("*")`, from)
		}
	}
	if o.Rate != "" {
		var err error
		if o.rate, err = rate.Parse(o.Rate); err != nil {
			return err
		}
	}
	o.pace = &pace{perSecond: o.MaxBytesPerSecond}
	o.day = newDayBudget(o.MaxBytesPerDay)
	o.lanes = newLanes(o.MaxConnections, o.AppendWindow, func(ctx context.Context) (*conn, error) {
		c, err := o.dial(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.Address, err)
		}
		return c, nil
	})
	return o.init()
}

// Warm implements plugin.Warmer: the first session is dialed now.
func (o *Output) Warm(ctx context.Context) { o.lanes.warm(ctx) }

var _ plugin.Warmer = (*Output)(nil)

// use runs fn on a session of its own (it selects a folder).
func (o *Output) use(ctx context.Context, fn func(c *conn) error) error {
	ln, err := o.lanes.hold(ctx)
	if err != nil {
		return err
	}
	err = fn(ln.c)
	o.lanes.done(ln, broken(ln.c, err))
	return err
}

// broken reports whether the session is unusable after err: it is closed,
// or err is not the server's answer.
func broken(c *conn, err error) bool {
	if !c.open() {
		return true
	}
	var ie *goimap.Error
	return err != nil && !errors.As(err, &ie) && !errors.Is(err, plugin.ErrNotHeld)
}

// target is the folder, as the destination names it, that a message from
// folder (whose SPECIAL-USE was role) goes to.
func (o *Output) target(ctx context.Context, folder, role string) (string, error) {
	if err := o.layout.learnOnce(ctx, o.use); err != nil {
		return "", err
	}
	return o.layout.target(o.FolderMap, o.Folder, folder, role)
}

// Deliver implements plugin.Output: APPEND into the message's folder with
// its flags and date, on a session shared with other APPENDs in flight. A
// delivery the engine marks in doubt (the reply to an earlier APPEND was
// lost) first looks for the message in that folder, so that a retry does
// not leave two copies.
func (o *Output) Deliver(ctx context.Context, msg *message.Message, d plugin.Delivery) ([]plugin.RecipientResult, error) {
	folder, err := o.target(ctx, msg.Folder, msg.FolderRole)
	if err != nil {
		return nil, err
	}
	placed := func(validity, uid uint32) {
		if d.Placed != nil && uid != 0 {
			d.Placed(where(folder, validity, uid))
		}
	}
	identity := msg.Identity()
	size, body := msg.Size(), msg.Reader
	// mine is the UID of the copy this delivery made or found (0: none);
	// mineSure is false when an APPEND may have stored one it cannot name.
	mine, mineSure := uint32(0), true
	if o.AddMessageID && msg.MessageID() == "" {
		// Prepended, not set through the header: the other bytes stay as
		// they are, and a message whose header could not be parsed gets
		// one too.
		field := "Message-ID: <" + identity + ">\r\n"
		size, body = size+int64(len(field)), func() io.Reader { return io.MultiReader(strings.NewReader(field), msg.Reader()) }
	}
	if o.SkipExisting {
		var at heldCopy
		var same func(uint32) (bool, error)
		if msg.MessageID() == "" {
			// An identity made from the header may be another message's.
			same = func(uid uint32) (bool, error) { return o.holdsBytes(ctx, folder, uid, body) }
		}
		read := func() (*folderCopies, error) {
			var fc *folderCopies
			err := o.use(ctx, func(c *conn) (err error) { fc, err = c.copies(folder); return err })
			return fc, err
		}
		look := func() (validity, held uint32, uids []uint32, err error) {
			err = o.use(ctx, func(c *conn) error {
				if !c.caps.Has(goimap.CapUIDPlus) && !c.caps.Has(goimap.CapIMAP4rev2) {
					return errCannotLook
				}
				validity, held, uids, err = c.copiesOf(folder, searchID(msg, identity, o.AddMessageID), identity, size)
				return err
			})
			return validity, held, uids, err
		}
		there, sent, err := o.held.take(folder, identity, d.Siblings, read, look, same, &at)
		if err != nil {
			return nil, fmt.Errorf("imap: reading what %q holds: %w", folder, err)
		}
		if sent != nil {
			// Whatever happens below, the look's folder learns what
			// became of this message's copy (see heldIndex.take).
			defer func() { sent(mine, mineSure) }()
		}
		if there {
			o.there.Add(1)
			placed(at.validity, at.uid)
			o.log.Info("already at the destination; not appended again", "folder", folder, "identity", identity)
			return nil, nil
		}
	}
	if d.InDoubt {
		id := searchID(msg, identity, o.AddMessageID)
		var at heldCopy
		err := o.use(ctx, func(c *conn) (err error) { at, err = c.find(folder, id, identity, msg.Size(), msg.Reader); return err })
		if err == nil && at.uid != 0 {
			mine = at.uid
			placed(at.validity, at.uid)
			o.log.Info("the in-doubt APPEND had arrived; not appending again", "folder", folder, "identity", identity)
			return nil, nil
		}
	}
	var flags []string
	if o.KeepFlags == nil || *o.KeepFlags {
		flags = msg.Flags
	}
	var date time.Time
	if o.KeepDate == nil || *o.KeepDate {
		date = msg.InternalDate
		if date.IsZero() {
			if t, err := mail.ParseDate(msg.Header.Get("Date")); err == nil {
				date = t
			}
		}
	}
	if limit, ok := o.layout.appendLimit(); ok && size > limit {
		return nil, plugin.Permanent(fmt.Errorf("imap: the message has %d bytes; the server takes at most %d (APPENDLIMIT)", size, limit))
	}
	if o.rate != nil {
		if err := o.rate.Wait(ctx); err != nil {
			return nil, err
		}
	}
	if err := o.pace.wait(ctx, size); err != nil {
		return nil, err
	}
	if wait, ok := o.day.take(size); !ok {
		return nil, plugin.Throttled(fmt.Errorf("imap: max_bytes_per_day (%d) reached; the next message may go in %v", o.MaxBytesPerDay, wait.Round(time.Second)), wait)
	}
	appended, err := o.appendTo(ctx, folder, flags, date, size, body)
	if err != nil {
		if !plugin.IsInDoubt(err) {
			o.day.giveBack(size)
		} else {
			mineSure = false
		}
		return nil, err
	}
	mine, mineSure = uint32(appended.UID), appended.UID != 0
	placed(appended.UIDValidity, uint32(appended.UID))
	return nil, nil
}

// appendTo makes folder if it is new, and APPENDs the message on a shared
// session: again on another when it did not go out, and once more after
// making the folder when the server says TRYCREATE.
func (o *Output) appendTo(ctx context.Context, folder string, flags []string, date time.Time, size int64, body func() io.Reader) (*goimap.AppendData, error) {
	if err := o.layout.ensure(ctx, folder, o.use); err != nil {
		return nil, err
	}
	created, unsent := false, 0
	for {
		ln, err := o.lanes.share(ctx)
		if err != nil {
			return nil, err
		}
		data, err := ln.c.appendMsg(folder, flags, date, size, body())
		var ns *notSentError
		var ie *goimap.Error
		switch {
		case err == nil:
			o.lanes.done(ln, false)
			return data, nil
		case errors.As(err, &ns):
			o.lanes.done(ln, true)
			if unsent++; unsent < 3 {
				continue
			}
			return nil, fmt.Errorf("imap APPEND to %q: %w", folder, err)
		case errors.As(err, &ie) && ie.Type != goimap.StatusResponseTypeBye:
			// The server said no to this message: not stored.
			o.lanes.done(ln, false)
			if ie.Code == goimap.ResponseCodeTryCreate && !created {
				created = true
				o.layout.forget(folder)
				if err := o.layout.ensure(ctx, folder, o.use); err != nil {
					return nil, err
				}
				continue
			}
			err = fmt.Errorf("imap APPEND to %q: %w", folder, err)
			if _, ok := serverWait(ie); ok {
				return nil, throttled(err)
			}
			// BAD and TOOBIG are about this message; anything else (a NO
			// without a code) may pass, and the message waits at its
			// source meanwhile.
			if ie.Type == goimap.StatusResponseTypeBad || ie.Code == "TOOBIG" {
				return nil, plugin.Permanent(err)
			}
			return nil, err
		default:
			// The session ended after the message went out and before its
			// reply came (a BYE says why): the server may have stored it.
			o.lanes.done(ln, true)
			return nil, plugin.InDoubt(throttled(fmt.Errorf("imap APPEND to %q: no reply: %w", folder, err)))
		}
	}
}

// where is how the output names a copy it holds for Delivery.Placed: the
// path part of an IMAP URL (RFC 5092), folder;UIDVALIDITY=v/;UID=u.
func where(folder string, validity, uid uint32) string {
	return fmt.Sprintf("%s;UIDVALIDITY=%d/;UID=%d", folder, validity, uid)
}

// parseWhere reads what where wrote.
func parseWhere(s string) (folder string, validity, uid uint32, ok bool) {
	i := strings.LastIndex(s, ";UIDVALIDITY=")
	if i < 0 {
		return "", 0, 0, false
	}
	if _, err := fmt.Sscanf(s[i:], ";UIDVALIDITY=%d/;UID=%d", &validity, &uid); err != nil || uid == 0 {
		return "", 0, 0, false
	}
	return s[:i], validity, uid, true
}

// AlreadyThere is how many messages were found at the destination
// (skip_existing) and not appended again.
func (o *Output) AlreadyThere() int64 { return o.there.Load() }

// Close implements plugin.Closer: LOGOUT from every session.
func (o *Output) Close() error {
	if o.lanes != nil { // nil when Init failed
		o.lanes.close()
	}
	return nil
}

// Holds implements plugin.Finder: the identities in the folder that mail
// from folder goes to.
func (o *Output) Holds(ctx context.Context, folder, role string) (map[string]int, error) {
	target, err := o.target(ctx, folder, role)
	if err != nil {
		return nil, err
	}
	var out map[string]int
	err = o.use(ctx, func(c *conn) (err error) { out, err = c.identities(target); return err })
	return out, err
}

var (
	_ plugin.Output      = (*Output)(nil)
	_ plugin.Provisioner = (*Output)(nil)
	_ plugin.Initializer = (*Output)(nil)
	_ plugin.Closer      = (*Output)(nil)
	_ plugin.FileUser    = (*Output)(nil)
	_ plugin.Finder      = (*Output)(nil)
)
