// Package pop3 is mailflow's POP3 input: a streaming POP3 client of our own
// and the input plugin built on it.
//
// The delivery contract over POP3: RETR → engine → ack → the ledger records
// the UIDL as settled (synced) → DELE → QUIT. The DELEs of a session are sent
// just before QUIT, which is when the server deletes anyway (RFC 1939 UPDATE
// state). If the session dies before QUIT, the server keeps every message;
// on the next poll the UIDLs the ledger knows are not fetched again, only
// deleted.
package pop3

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/mailflow/mailflow/connectors/internal/sasl"
	"github.com/mailflow/mailflow/connectors/internal/tlsconf"
	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/plugins"
)

//go:embed sample.conf
var sampleConfig string

func init() {
	plugins.AddInput("pop3", func() engine.Input { return &Input{} })
}

// Input fetches mail from a POP3 mailbox. Its exported fields are its config.
type Input struct {
	Address            string `toml:"address"`
	TLS                string `toml:"tls"`
	Username           string `toml:"username"`
	Password           string `toml:"password"`
	PasswordEnv        string `toml:"password_env"`
	PasswordFile       string `toml:"password_file"`
	Auth               string `toml:"auth"`
	AllowPlaintextAuth bool   `toml:"allow_plaintext_auth"`
	Delete             *bool  `toml:"delete"`
	MaxMessageSize     int64  `toml:"max_message_size"`
	Pipelining         *bool  `toml:"pipelining"`
	Window             int    `toml:"pipeline_window"`
	Timeout            string `toml:"timeout"`
	tlsconf.Options

	name     string
	log      *slog.Logger
	ledger   engine.SourceLedger
	spool    engine.SpoolOptions
	secret   string
	delete   bool
	timeout  time.Duration
	tlsCfg   *tls.Config
	pipeline bool
}

// SampleConfig returns the documented sample config.
func (*Input) SampleConfig() string { return sampleConfig }

// Provision implements engine.Provisioner.
func (in *Input) Provision(env engine.Env) error {
	in.name, in.log, in.ledger, in.spool = env.Name, env.Logger, env.Ledger, env.Spool
	return nil
}

// Init implements engine.Initializer: it checks the options and applies
// the defaults.
func (in *Input) Init() error {
	if in.Address == "" {
		return errors.New("address is required (host:port)")
	}
	if _, _, err := net.SplitHostPort(in.Address); err != nil {
		return fmt.Errorf("address %q: %v", in.Address, err)
	}
	switch in.TLS {
	case "":
		in.TLS = "implicit"
	case "implicit", "starttls", "none":
	default:
		return fmt.Errorf("tls must be \"implicit\", \"starttls\" or \"none\", not %q", in.TLS)
	}
	switch strings.ToLower(in.Auth) {
	case "", "auto", "user", "apop", "plain", "login", "xoauth2":
	default:
		return fmt.Errorf("auth must be auto, user, apop, plain, login or xoauth2, not %q", in.Auth)
	}
	if in.Username == "" {
		return errors.New("username is required")
	}
	secret, err := engine.ResolveSecret("password", in.Password, in.PasswordEnv, in.PasswordFile)
	if err != nil {
		return err
	}
	in.secret = secret
	in.delete = in.Delete == nil || *in.Delete
	in.pipeline = in.Pipelining == nil || *in.Pipelining
	if in.Window <= 0 {
		in.Window = 16
	}
	in.timeout = time.Minute
	if in.Timeout != "" {
		if in.timeout, err = time.ParseDuration(in.Timeout); err != nil {
			return fmt.Errorf("timeout: %v", err)
		}
	}
	if in.MaxMessageSize > 0 {
		in.spool.MaxSize = in.MaxMessageSize
	}
	if in.TLS != "none" || in.InsecureSkipVerify {
		if in.tlsCfg, err = in.Options.Config(in.Address, in.log); err != nil {
			return err
		}
	}
	if in.TLS == "none" && !in.AllowPlaintextAuth && !strings.EqualFold(in.Auth, "apop") {
		return errors.New(`tls = "none" would send the password in clear; set allow_plaintext_auth = true if you mean it, or use auth = "apop"`)
	}
	return nil
}

// dial connects, secures and logs in.
func (in *Input) dial(ctx context.Context) (*Client, error) {
	var c *Client
	var err error
	if in.TLS == "implicit" {
		c, err = Dial(ctx, in.Address, in.tlsCfg, in.timeout)
	} else {
		c, err = Dial(ctx, in.Address, nil, in.timeout)
	}
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
			return nil, engine.Permanent(fmt.Errorf("pop3: %s does not offer STLS and tls = \"starttls\"; refusing to go on in clear", in.Address))
		}
		if err := c.StartTLS(in.tlsCfg); err != nil {
			c.Close()
			return nil, err
		}
		if _, err := c.Capa(); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := in.login(c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (in *Input) login(c *Client) error {
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
		return engine.Permanent(errors.New("pop3: refusing to send the password over a connection without TLS (allow_plaintext_auth = false)"))
	}
	switch method {
	case "user":
		if err := c.User(in.Username); err != nil {
			return err
		}
		return c.Pass(in.secret)
	case "apop":
		return c.Apop(in.Username, in.secret)
	default:
		m, err := sasl.New(method, in.Username, in.secret)
		if err != nil {
			return err
		}
		return c.Auth(m)
	}
}

// Open implements engine.Input: it logs in and lists the mailbox.
func (in *Input) Open(ctx context.Context) (engine.Session, error) {
	c, err := in.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", in.Address, err)
	}
	s := &session{in: in, c: c}
	if err := s.list(); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w", in.Address, err)
	}
	return s, nil
}

type session struct {
	in     *Input
	c      *Client
	todo   []MessageInfo // to fetch, in order
	queued int           // RETRs sent whose replies are not read yet
	sent   int           // index in todo of the next RETR to send
	next   int           // index in todo of the next reply to read
	broken error         // the connection is out of step

	mu      sync.Mutex
	dele    []int    // message numbers to delete before QUIT
	deleIDs []string // their UIDLs, to forget after a successful QUIT
	onSrv   map[string]bool
}

// list reads UIDL and LIST and decides what to fetch.
func (s *session) list() error {
	sizes, uids, err := s.in.inventory(s.c)
	if err != nil {
		return err
	}
	s.onSrv = map[string]bool{}
	var tooLarge int
	for _, m := range sizes {
		m.UID = uids[m.Number]
		if m.UID == "" {
			return &ProtocolError{Command: "UIDL", Line: fmt.Sprintf("no id for message %d", m.Number)}
		}
		s.onSrv[m.UID] = true
		if s.in.ledger != nil && s.in.ledger.Delivered(m.UID) {
			// Delivered on an earlier poll whose QUIT never happened (or
			// kept on purpose): delete now, or leave it, but never fetch.
			if s.in.delete {
				s.dele = append(s.dele, m.Number)
				s.deleIDs = append(s.deleIDs, m.UID)
			}
			continue
		}
		if s.in.spool.MaxSize > 0 && m.Size > s.in.spool.MaxSize {
			tooLarge++
			s.in.log.Warn("message is over max_message_size; left on the server", "number", m.Number, "uidl", m.UID, "size", m.Size, "max", s.in.spool.MaxSize)
			continue
		}
		s.todo = append(s.todo, m)
	}
	if len(s.dele) > 0 {
		s.in.log.Info("deleting messages delivered on an earlier poll", "count", len(s.dele))
	}
	return nil
}

// inventory lists the mailbox: sizes by LIST, ids by UIDL, or, on servers
// without UIDL, by a hash of each message's header (TOP n 0).
func (in *Input) inventory(c *Client) ([]MessageInfo, map[int]string, error) {
	sizes, err := c.List()
	if err != nil {
		return nil, nil, err
	}
	uids := map[int]string{}
	if c.Has("UIDL") || len(c.caps) == 0 {
		ul, err := c.Uidl()
		var pe *Error
		if err != nil && !errors.As(err, &pe) {
			return nil, nil, err
		}
		for _, u := range ul {
			uids[u.Number] = u.UID
		}
	}
	if len(uids) == 0 && len(sizes) > 0 {
		in.log.Warn("server has no UIDL; identifying messages by a hash of their headers (TOP n 0)")
		for _, m := range sizes {
			h, err := c.Top(m.Number, 0, 1<<20)
			if err != nil {
				return nil, nil, err
			}
			uids[m.Number] = fmt.Sprintf("hdr-%x", sha256.Sum256(h))
		}
	}
	return sizes, uids, nil
}

// SurveyItem is one message of the mailbox as Survey sees it.
type SurveyItem struct {
	Number    int
	UID       string
	Size      int64
	Delivered bool   // the ledger has it as settled: it will not be fetched again
	TooLarge  bool   // over max_message_size: it will be left on the server
	Header    []byte // its header (TOP n 0), when asked for
}

// Survey logs in and lists the mailbox without fetching, deleting or
// changing anything, then logs out: for progress totals and dry runs.
func (in *Input) Survey(ctx context.Context, headers bool) ([]SurveyItem, error) {
	c, err := in.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", in.Address, err)
	}
	defer c.Close()
	sizes, uids, err := in.inventory(c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", in.Address, err)
	}
	out := make([]SurveyItem, 0, len(sizes))
	for _, m := range sizes {
		it := SurveyItem{Number: m.Number, UID: uids[m.Number], Size: m.Size}
		it.Delivered = in.ledger != nil && it.UID != "" && in.ledger.Delivered(it.UID)
		it.TooLarge = in.spool.MaxSize > 0 && m.Size > in.spool.MaxSize
		if headers && !it.Delivered {
			if it.Header, err = c.Top(m.Number, 0, 1<<20); err != nil {
				return nil, fmt.Errorf("%s: %w", in.Address, err)
			}
		}
		out = append(out, it)
	}
	if err := c.Quit(); err != nil {
		return nil, fmt.Errorf("%s: %w", in.Address, err)
	}
	return out, nil
}

// window is how many RETRs may be outstanding.
func (s *session) window() int {
	if s.in.pipeline && s.c.Has("PIPELINING") {
		return s.in.Window
	}
	return 1
}

func (s *session) Next(ctx context.Context) (*engine.Message, engine.AckFunc, error) {
	for s.next < len(s.todo) {
		if s.broken != nil {
			return nil, nil, s.broken
		}
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		// Keep the pipeline full: the server sends the next messages while
		// the engine works on this one.
		sentAny := false
		for s.sent < len(s.todo) && s.queued < s.window() {
			s.c.SendRetr(s.todo[s.sent].Number)
			s.sent++
			s.queued++
			sentAny = true
		}
		if sentAny {
			if err := s.c.Flush(); err != nil {
				s.broken = err
				return nil, nil, err
			}
		}
		m := s.todo[s.next]
		s.next++
		s.queued--
		r, err := s.c.ReadRetr(s.in.spool.MaxSize)
		if err != nil {
			var pe *Error
			if errors.As(err, &pe) {
				// The message vanished or cannot be read: one line, the
				// stream is still in step. Leave it and go on.
				s.in.log.Warn("RETR refused; message left on the server", "number", m.Number, "uidl", m.UID, "err", err)
				continue
			}
			s.broken = err
			return nil, nil, err
		}
		msg, err := engine.ReadMessage(r, engine.Source{Input: s.in.name, ID: m.UID}, s.in.spool)
		if err != nil {
			// Mid-message the stream is out of step (or the size bound
			// was hit because the server lied in LIST): end the session
			// without QUIT, so that nothing is deleted on the server.
			if errors.Is(err, engine.ErrTooLarge) || errors.Is(err, ErrMessageTooLarge) {
				err = fmt.Errorf("message %d (%s) is larger than max_message_size although LIST said %d bytes; session ended", m.Number, m.UID, m.Size)
			}
			s.broken = err
			return nil, nil, err
		}
		return msg, s.ackFunc(m), nil
	}
	return nil, nil, engine.ErrEndOfInput
}

func (s *session) ackFunc(m MessageInfo) engine.AckFunc {
	return func(ctx context.Context, err error) error {
		if err != nil || !s.in.delete {
			return nil
		}
		s.mu.Lock()
		s.dele = append(s.dele, m.Number)
		s.deleIDs = append(s.deleIDs, m.UID)
		s.mu.Unlock()
		return nil
	}
}

// Close marks the settled messages deleted and QUITs, which commits the
// deletions. If the session is broken it is dropped without QUIT: the server
// keeps everything, and the ledger makes the next poll delete what was
// delivered.
func (s *session) Close(ctx context.Context) error {
	if s.broken != nil {
		s.c.Close()
		return nil // already reported by Next
	}
	if s.queued > 0 {
		// Stopped early (shutdown): read the replies still in flight so
		// that the DELE replies line up.
		for ; s.queued > 0; s.queued-- {
			r, err := s.c.ReadRetr(0)
			if err == nil {
				err = r.(*dotReader).drain()
			}
			var pe *Error
			if err != nil && !errors.As(err, &pe) {
				s.c.Close()
				return err
			}
		}
	}
	s.mu.Lock()
	dele, ids := s.dele, s.deleIDs
	s.mu.Unlock()
	if err := s.c.DeleMany(dele); err != nil {
		s.c.Close()
		return fmt.Errorf("DELE: %w (the messages stay on the server and are deleted on the next poll)", err)
	}
	if err := s.c.Quit(); err != nil {
		return fmt.Errorf("QUIT: %w (the server may not have deleted the messages; they are deleted on the next poll)", err)
	}
	if s.in.ledger == nil {
		return nil
	}
	if s.in.delete {
		return s.in.ledger.Forget(ids)
	}
	// Keep mode: forget the UIDLs that left the server by other means.
	var gone []string
	for _, id := range s.in.ledger.Known() {
		if !s.onSrv[id] {
			gone = append(gone, id)
		}
	}
	return s.in.ledger.Forget(gone)
}

var (
	_ engine.Input       = (*Input)(nil)
	_ engine.Provisioner = (*Input)(nil)
	_ engine.Initializer = (*Input)(nil)
)
