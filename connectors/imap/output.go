package imap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"

	goimap "github.com/emersion/go-imap/v2"

	"github.com/mailflow/mailflow/connectors/internal/pool"
	"github.com/mailflow/mailflow/engine/message"
)

// Output stores messages in an IMAP mailbox. Its exported fields are its
// config.
type Output struct {
	Endpoint
	// Folder is where a message goes that came from no folder (POP3, a
	// Maildir's new/ and cur/); default INBOX.
	Folder string `toml:"folder"`
	// FolderMap renames source folders: "Sent" = "Sent Items", and
	// "Archive/*" = "Old/*" for a folder and everything below it.
	FolderMap map[string]string `toml:"folder_map"`
	// KeepFlags and KeepDate: store the source's flags and date (default).
	KeepFlags      *bool `toml:"keep_flags"`
	KeepDate       *bool `toml:"keep_date"`
	MaxConnections int   `toml:"max_connections"`
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
	// average (0: as fast as the server takes them).
	MaxBytesPerSecond int64 `toml:"max_bytes_per_second"`

	pool    *pool.Pool[*conn]
	created sync.Map // folders known to exist
	held    heldIndex
	layout  layout
	pace    *pace
	there   atomic.Int64 // messages found at the destination and not appended
}

// SampleConfig returns the documented sample config of both plugins.
func (*Output) SampleConfig() string { return sampleConfig }

// Provision implements plugin.Provisioner.
func (o *Output) Provision(env plugin.Env) error {
	o.provision(env)
	return nil
}

// Init implements plugin.Initializer.
func (o *Output) Init() error {
	if o.Folder == "" {
		o.Folder = "INBOX"
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = 4
	}
	if o.MaxBytesPerSecond < 0 {
		return fmt.Errorf("max_bytes_per_second must not be negative")
	}
	o.pace = &pace{perSecond: o.MaxBytesPerSecond}
	// A session is never ended for being idle: the server's autologout
	// shows as a broken session, and a delivery tries again.
	o.pool = pool.New(o.MaxConnections, 0, func(ctx context.Context) (*conn, error) { return o.dial(ctx) },
		func(c *conn) { c.close() }, func(c *conn) { c.c.Close() })
	return o.init()
}

// target is the folder, as the destination names it, that a message from
// folder (whose SPECIAL-USE was role) goes to.
func (o *Output) target(c *conn, folder, role string) (string, error) {
	if err := o.layout.learn(c); err != nil {
		return "", err
	}
	return o.layout.place(o.FolderMap, o.Folder, folder, role), nil
}

// Deliver implements plugin.Output: APPEND into the message's folder with
// its flags and date. A delivery the engine marks in doubt (the reply to an
// earlier APPEND was lost) first looks for the Message-ID in that folder, so
// that a retry does not leave two copies.
func (o *Output) Deliver(ctx context.Context, msg *message.Message, d plugin.Delivery) ([]plugin.RecipientResult, error) {
	c, err := o.pool.Get(ctx)
	if err != nil {
		return nil, err
	}
	folder, err := o.target(c, msg.Folder, msg.FolderRole)
	if err != nil {
		o.pool.Put(c, true)
		return nil, err
	}
	identity := msg.Identity()
	if o.SkipExisting {
		there, err := o.held.take(folder, identity, d.Siblings, func() (map[string]int, error) { return c.identities(folder) })
		if err != nil {
			o.pool.Put(c, false)
			return nil, fmt.Errorf("imap: reading what %q holds: %w", folder, err)
		}
		if there {
			o.there.Add(1)
			o.pool.Put(c, false)
			o.log.Info("already at the destination; not appended again", "folder", folder, "identity", identity)
			return nil, nil
		}
	}
	if d.InDoubt {
		id := msg.MessageID()
		if id == "" && o.AddMessageID {
			id = identity // the Message-ID it was given
		}
		if id != "" {
			found, err := c.hasMessageID(folder, id)
			if err == nil && found {
				o.pool.Put(c, false)
				o.log.Info("the in-doubt APPEND had arrived; not appending again", "folder", folder, "message_id", id)
				return nil, nil
			}
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
	size, body := msg.Size(), msg.Reader
	if o.AddMessageID && msg.MessageID() == "" {
		// Prepended, not set through the header: the other bytes stay as
		// they are, and a message whose header could not be parsed gets
		// one too.
		field := "Message-ID: <" + identity + ">\r\n"
		size, body = size+int64(len(field)), func() io.Reader { return io.MultiReader(strings.NewReader(field), msg.Reader()) }
	}
	if o.pace.perSecond > 0 {
		// The session goes back to the pool while the message waits its
		// turn, so that a long wait does not hold it idle to the server's
		// autologout.
		o.pool.Put(c, false)
		if err := o.pace.wait(ctx, size); err != nil {
			return nil, err
		}
		if c, err = o.pool.Get(ctx); err != nil {
			return nil, err
		}
	}
	appended, err := o.appendTo(c, folder, flags, date, size, body())
	var ie *goimap.Error
	if errors.As(err, &ie) && ie.Code == goimap.ResponseCodeTryCreate {
		if cerr := c.create(folder); cerr != nil {
			o.pool.Put(c, false)
			return nil, fmt.Errorf("imap CREATE %q: %w", folder, cerr)
		}
		appended, err = o.appendTo(c, folder, flags, date, size, body())
	}
	switch {
	case err == nil:
		o.pool.Put(c, false)
		if appended != nil && appended.UID != 0 {
			// UIDPLUS says where it went: logged, so that a person can find
			// the copy (UID SEARCH, or UID FETCH in that folder).
			o.log.Debug("appended", "folder", folder, "uidvalidity", appended.UIDValidity, "uid", appended.UID, "identity", identity)
		}
		return nil, nil
	case errors.As(err, &ie):
		// The server said no. BAD and TOOBIG are about this message;
		// anything else (OVERQUOTA, a NO without a code) may pass, and the
		// message waits at its source meanwhile.
		o.pool.Put(c, false)
		if ie.Type == goimap.StatusResponseTypeBad || ie.Code == "TOOBIG" {
			return nil, plugin.Permanent(fmt.Errorf("imap APPEND to %q: %w", folder, err))
		}
		return nil, fmt.Errorf("imap APPEND to %q: %w", folder, err)
	default:
		// The connection broke while the message went out: the server may
		// have stored it.
		o.pool.Put(c, true)
		return nil, plugin.InDoubt(fmt.Errorf("imap APPEND to %q: no reply: %w", folder, err))
	}
}

func (o *Output) appendTo(c *conn, folder string, flags []string, date time.Time, size int64, r io.Reader) (*goimap.AppendData, error) {
	if _, ok := o.created.Load(folder); !ok && folder != "INBOX" {
		if err := c.create(folder); err == nil {
			o.created.Store(folder, true)
		}
	}
	return c.appendMsg(folder, flags, date, size, r)
}

// AlreadyThere is how many messages were found at the destination
// (skip_existing) and not appended again.
func (o *Output) AlreadyThere() int64 { return o.there.Load() }

// Close implements plugin.Closer: LOGOUT from every pooled session.
func (o *Output) Close() error {
	if o.pool != nil { // nil when Init failed
		o.pool.Close()
	}
	return nil
}

var (
	_ plugin.Output      = (*Output)(nil)
	_ plugin.Provisioner = (*Output)(nil)
	_ plugin.Initializer = (*Output)(nil)
	_ plugin.Closer      = (*Output)(nil)
	_ plugin.FileUser    = (*Output)(nil)
	_ plugin.Finder      = (*Output)(nil)
)

// Holds implements plugin.Finder: the identities in the folder that mail
// from folder goes to.
func (o *Output) Holds(ctx context.Context, folder, role string) (map[string]int, error) {
	c, err := o.pool.Get(ctx)
	if err != nil {
		return nil, err
	}
	target, err := o.target(c, folder, role)
	if err != nil {
		o.pool.Put(c, true)
		return nil, err
	}
	defer o.pool.Put(c, false)
	return c.identities(target)
}

// heldIndex is what each target folder held when the output first
// delivered to it: identity → copies not yet matched to a message.
type heldIndex struct {
	mu      sync.Mutex
	folders map[string]map[string]int
}

// take reports whether folder holds a copy of identity that no message
// delivered before has claimed (siblings: those the ledger has as
// delivered, whose copies are among those the folder holds), and claims
// it; read lists the folder the first time.
func (h *heldIndex) take(folder, identity string, siblings int, read func() (map[string]int, error)) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	idx, ok := h.folders[folder]
	if !ok {
		var err error
		if idx, err = read(); err != nil {
			return false, err
		}
		if h.folders == nil {
			h.folders = map[string]map[string]int{}
		}
		h.folders[folder] = idx
	}
	if idx[identity]-siblings > 0 {
		idx[identity]--
		return true, nil
	}
	return false, nil
}
