// Package pop3 is mailflow's POP3 input: a streaming POP3 client of our own
// and the input plugin built on it.
//
// A session lists the mailbox (LIST, and UIDL for the ids), fetches what the
// engine asks for with pipelined RETRs, and commits with DELE and QUIT: the
// server deletes only at a QUIT it answers +OK (RFC 1939's UPDATE state), so
// a session that dies before it keeps every message. Which messages to
// fetch, and which may be deleted, is the engine's decision.
package pop3

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"

	"github.com/mailflow/mailflow/connectors/internal/endpoint"
	"github.com/mailflow/mailflow/connectors/internal/sasl"
	"github.com/mailflow/mailflow/connectors/internal/settle"
	"github.com/mailflow/mailflow/plugins"
)

//go:embed sample.conf
var sampleConfig string

func init() {
	plugins.AddInput("pop3", func() plugin.Input { return &Input{} })
}

// Input fetches mail from a POP3 mailbox. Its exported fields are its config.
type Input struct {
	// address, tls, tls_*, username, password*, auth, allow_plaintext_auth,
	// timeout and the oauth2 keys.
	endpoint.Settings
	// OnSettled is "delete" (default: DELE once the engine says a message
	// is settled) or "keep".
	OnSettled string `toml:"on_settled"`
	// Delete is the old name of on_settled: true is "delete", false
	// "keep". Still read, with a warning.
	Delete     *bool `toml:"delete"`
	Pipelining *bool `toml:"pipelining"`
	Window     int   `toml:"pipeline_window"`

	log      *slog.Logger
	delete   bool
	pipeline bool
}

// protocol is what POP3 adds to the shared endpoint settings: implicit TLS
// on port 995 by default, a username always, its own auth methods, and APOP,
// which does not send the password, allowed in clear.
var protocol = endpoint.Protocol{
	DefaultTLS: "implicit", StartTLSPort: "110", ImplicitPort: "995",
	Timeout:     time.Minute,
	SafeInClear: []string{"apop"},
	CheckAuth: func(auth string) error {
		switch strings.ToLower(auth) {
		case "", "auto", "user", "apop", "plain", "login", "xoauth2":
			return nil
		}
		return fmt.Errorf("auth must be auto, user, apop, plain, login, oauth2 or xoauth2 (a fixed token), not %q", auth)
	},
}

// SampleConfig returns the documented sample config.
func (*Input) SampleConfig() string { return sampleConfig }

// Provision implements plugin.Provisioner.
func (in *Input) Provision(env plugin.Env) error {
	in.log = env.Logger
	in.Settings.Provision(env)
	return nil
}

// Init implements plugin.Initializer: it checks the options and applies
// the defaults.
func (in *Input) Init() error {
	if err := in.Settings.Init(protocol); err != nil {
		return err
	}
	var err error
	if in.delete, err = settle.Remove(in.OnSettled, in.Delete, in.log); err != nil {
		return err
	}
	in.pipeline = in.Pipelining == nil || *in.Pipelining
	if in.Window <= 0 {
		in.Window = 16
	}
	return nil
}

// dial connects, secures and logs in.
func (in *Input) dial(ctx context.Context) (*Client, error) {
	conn, err := in.Settings.Dial(ctx, nil)
	if err != nil {
		return nil, err
	}
	c, err := NewClient(conn, in.Wait())
	if err != nil {
		return nil, err
	}
	if _, err := c.Capa(); err != nil {
		c.Close()
		return nil, err
	}
	if in.TLS == "starttls" {
		if !c.Has("STLS") {
			c.Close()
			return nil, plugin.Permanent(fmt.Errorf("pop3: %s does not offer STLS and tls = \"starttls\"; refusing to go on in clear", in.Address))
		}
		if err := c.StartTLS(in.TLSConfig()); err != nil {
			c.Close()
			return nil, err
		}
		if _, err := c.Capa(); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := in.login(ctx, c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// isAuthRefusal reports whether the server answered AUTH with -ERR (as
// against a broken connection).
func isAuthRefusal(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

func (in *Input) login(ctx context.Context, c *Client) error {
	method := strings.ToLower(in.Auth)
	saslMechs := strings.Fields(strings.ToUpper(c.caps["SASL"]))
	has := func(m string) bool {
		for _, x := range saslMechs {
			if x == m {
				return true
			}
		}
		return false
	}
	if method == "" || method == "auto" {
		switch {
		case has("PLAIN"):
			method = "plain"
		default:
			method = "user"
		}
	}
	if !c.IsTLS() && !in.AllowPlaintextAuth && method != "apop" {
		return plugin.Permanent(errors.New("pop3: refusing to send the password over a connection without TLS (allow_plaintext_auth = false)"))
	}
	switch method {
	case "oauth2":
		_, err := in.LoginOAuth(ctx, has("OAUTHBEARER"), c.Auth, isAuthRefusal)
		return err
	case "user":
		if err := c.User(in.Username); err != nil {
			return err
		}
		return c.Pass(in.Secret())
	case "apop":
		return c.Apop(in.Username, in.Secret())
	default:
		m, err := sasl.New(method, in.Username, in.Secret())
		if err != nil {
			return err
		}
		return c.Auth(m)
	}
}

// Open implements plugin.Input: it connects and logs in.
func (in *Input) Open(ctx context.Context) (plugin.Session, error) {
	c, err := in.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", in.Address, err)
	}
	return &session{in: in, c: c}, nil
}

type session struct {
	in     *Input
	c      *Client
	broken error // the connection is out of step: drop it, never QUIT

	// After a restart, the message numbers of the new session, by id (a
	// message's number belongs to a session); nil before one.
	nums     map[string]int
	restarts int
}

// maxRestarts bounds the new sessions one poll starts after a reply it
// could not read to its end: each costs a login and a listing, and a
// server whose every reply ends early (a LIST that overstates every size)
// is better left to the next poll, where the engine passes over what it
// held, than logged into for every message.
const maxRestarts = 5

// The id schemes. Without UIDL a message is named by a hash of its header
// and its size, and a count among messages that share both: unique within a
// listing, but only a hint across sessions, so the listing says it is not
// stable and the engine checks each message's content before committing.
const (
	schemeUIDL   = "uidl"
	schemeHeader = "pop3-header"
)

// List implements plugin.Session: LIST for the sizes, UIDL for the ids.
func (s *session) List(ctx context.Context) (plugin.Listing, error) {
	l, err := s.in.inventory(s.c)
	if err != nil {
		return l, s.fail(err)
	}
	return l, nil
}

func (s *session) fail(err error) error {
	if s.broken == nil {
		var pe *Error
		if !errors.As(err, &pe) {
			s.broken = err
		}
	}
	return fmt.Errorf("%s: %w", s.in.Address, err)
}

// inventory lists the mailbox.
func (in *Input) inventory(c *Client) (plugin.Listing, error) {
	l := plugin.Listing{Scheme: schemeUIDL, Stable: true, Keeps: !in.delete}
	sizes, err := c.List()
	if err != nil {
		return l, err
	}
	uids := map[int]string{}
	advertised := c.Has("UIDL")
	if advertised || len(c.caps) == 0 {
		ul, err := c.Uidl()
		var pe *Error
		switch {
		case err != nil && !errors.As(err, &pe):
			return l, err
		case err != nil && advertised:
			// It said it has UIDL and then did not give it: a passing
			// fault. Falling back to other ids now would make this poll
			// unlike the last one; wait for the next poll instead.
			return l, fmt.Errorf("the server lists UIDL but refused it (%v); nothing fetched or deleted, trying again next poll", err)
		}
		for _, u := range ul {
			uids[u.Number] = u.UID
		}
	}
	if len(uids) == 0 && len(sizes) > 0 {
		in.log.Warn("server has no UIDL; naming messages by a hash of their header and size (TOP n 0), and checking each one's content before deleting it")
		l.Scheme, l.Stable = schemeHeader, false
		seen := map[string]int{}
		for _, m := range sizes {
			h, err := c.Top(m.Number, 0, 1<<20)
			if err != nil {
				return l, err
			}
			base := fmt.Sprintf("hdr-%x-%d", sha256.Sum256(h), m.Size)
			seen[base]++
			uids[m.Number] = fmt.Sprintf("%s-%d", base, seen[base])
		}
	}
	for _, m := range sizes {
		id := uids[m.Number]
		if id == "" {
			return l, &ProtocolError{Command: "UIDL", Line: fmt.Sprintf("no id for message %d", m.Number)}
		}
		l.Items = append(l.Items, plugin.Item{ID: id, Size: m.Size, Ref: m.Number})
	}
	return l, nil
}

// window is how many RETRs may be outstanding.
func (s *session) window() int {
	if s.in.pipeline && s.c.Has("PIPELINING") {
		return s.in.Window
	}
	return 1
}

// Fetch implements plugin.Session with RETRs kept in flight ahead of the
// one being read, so the server sends the next messages while the engine
// works on this one.
//
// A reply that ended before the bytes LIST gave may have ended at a line
// the server did not byte-stuff, with the rest of the message still on
// its way: the connection is dropped rather than read on, and a new
// session fetches the rest (restart), so that one message the server
// cannot send right does not hold up the mailbox. The engine was handed
// the bytes as they came; it finds their size wrong and keeps the message
// at the source, and the reader's Misread says why where it can tell.
func (s *session) Fetch(ctx context.Context, items []plugin.Item, each func(plugin.Item, io.Reader, error) error) error {
	sent := 0 // items[:sent] were asked for on this connection
	for next := 0; next < len(items); next++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if s.broken != nil {
			return s.broken
		}
		sentAny := false
		for ; sent < len(items) && s.c.inflight() < s.window(); sent++ {
			if n, ok := s.number(items[sent]); ok {
				s.c.SendRetr(n)
				sentAny = true
			}
		}
		if sentAny {
			if err := s.c.Flush(); err != nil {
				return s.fail(err)
			}
		}
		it := items[next]
		if _, ok := s.number(it); !ok {
			if err := each(it, nil, fmt.Errorf("%s: message %s is no longer on the server", s.in.Address, it.ID)); err != nil {
				return err
			}
			continue
		}
		r, err := s.c.ReadRetr(0)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				return s.fail(err)
			}
			// One line: the stream is still in step.
			if err := each(it, nil, err); err != nil {
				return err
			}
			continue
		}
		err = each(it, r, nil)
		// Whatever the engine read, the rest of the reply must go before
		// the next one can be read.
		derr := r.(*dotReader).drain()
		if lost := s.c.OutOfStep(); lost != nil {
			if err != nil {
				s.broken = lost
				return err
			}
			if err := s.restart(ctx, lost); err != nil {
				return err
			}
			sent = next + 1 // the RETRs in flight went with the connection
			continue
		}
		if derr != nil {
			return s.fail(derr)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// number is the message number of it in the current session.
func (s *session) number(it plugin.Item) (int, bool) {
	if s.nums == nil {
		return it.Ref.(int), true
	}
	n, ok := s.nums[it.ID]
	return n, ok
}

// restart replaces a connection whose stream cannot be trusted (cause)
// with a new session, logged in and listed, whose message numbers are
// found by id. The old one is dropped without QUIT, so the server deletes
// nothing; nothing was marked yet either, since Commit comes after Fetch.
func (s *session) restart(ctx context.Context, cause error) error {
	s.c.Close()
	if s.restarts == maxRestarts {
		s.broken = fmt.Errorf("%s: %w (and %d new sessions this poll already; the rest waits for the next poll)", s.in.Address, cause, maxRestarts)
		return s.broken
	}
	s.restarts++
	s.in.log.Warn("a reply ended before the size the server listed; going on in a new session", "server", s.in.Address, "err", cause)
	c, err := s.in.dial(ctx)
	if err != nil {
		s.broken = fmt.Errorf("%s: a new session after %v: %w", s.in.Address, cause, err)
		return s.broken
	}
	l, err := s.in.inventory(c)
	if err != nil {
		c.Close()
		s.broken = fmt.Errorf("%s: listing in a new session after %v: %w", s.in.Address, cause, err)
		return s.broken
	}
	s.c = c
	s.nums = make(map[string]int, len(l.Items))
	for _, it := range l.Items {
		s.nums[it.ID] = it.Ref.(int)
	}
	return nil
}

// PeekHeader implements plugin.HeaderPeeker with TOP n 0.
func (s *session) PeekHeader(ctx context.Context, it plugin.Item) ([]byte, error) {
	n, ok := s.number(it)
	if !ok {
		return nil, fmt.Errorf("%s: message %s is no longer on the server", s.in.Address, it.ID)
	}
	h, err := s.c.Top(n, 0, 1<<20)
	if err != nil {
		return nil, s.fail(err)
	}
	return h, nil
}

// Commit implements plugin.Session: it marks the messages deleted (with
// on_settled = "keep", it does nothing). The server deletes them at QUIT, in
// Close. A DELE refused for one message leaves that one for the next poll.
func (s *session) Commit(ctx context.Context, items []plugin.Item) ([]plugin.Item, error) {
	if !s.in.delete || len(items) == 0 {
		return nil, nil
	}
	if s.broken != nil {
		return items, s.broken
	}
	if err := s.drainQueued(); err != nil {
		return items, s.fail(err)
	}
	var nums []int
	var failed, marking []plugin.Item
	for _, it := range items {
		if n, ok := s.number(it); ok {
			nums = append(nums, n)
			marking = append(marking, it)
		} else {
			failed = append(failed, it) // not in the listing of a restarted session: gone from the server
		}
	}
	refused, err := s.c.DeleEach(nums)
	if err != nil {
		return items, s.fail(err)
	}
	for i, it := range marking {
		if refused[i] != nil {
			s.in.log.Warn("DELE refused; the message stays on the server for the next poll", "number", nums[i], "id", it.ID, "err", refused[i])
			failed = append(failed, it)
		}
	}
	return failed, nil
}

// drainQueued reads the replies of RETRs still in flight (a fetch that
// stopped early), so that the next reply read is the next command's.
func (s *session) drainQueued() error {
	for s.c.inflight() > 0 {
		r, err := s.c.ReadRetr(0)
		if err == nil {
			err = r.(*dotReader).drain()
		}
		var pe *Error
		if err != nil && !errors.As(err, &pe) {
			return err
		}
	}
	return nil
}

// Close implements plugin.Session: QUIT, which makes the server delete
// what was marked. A broken session is dropped without QUIT, so the server
// deletes nothing.
func (s *session) Close(ctx context.Context) error {
	if s.broken != nil {
		s.c.Close()
		return nil // already reported
	}
	if err := s.drainQueued(); err != nil {
		s.c.Close()
		return err
	}
	if err := s.c.Quit(); err != nil {
		return fmt.Errorf("QUIT: %w (the server may not have deleted the messages; they are deleted on the next poll)", err)
	}
	return nil
}

var (
	_ plugin.Input        = (*Input)(nil)
	_ plugin.Provisioner  = (*Input)(nil)
	_ plugin.Initializer  = (*Input)(nil)
	_ plugin.FileUser     = (*Input)(nil)
	_ plugin.HeaderPeeker = (*session)(nil)
)
