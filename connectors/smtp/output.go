// Package smtp is mailflow's SMTP output: an SMTP client of our own and the
// output plugin built on it. A message counts as delivered to a recipient
// only when the server answered 250 to the end of its data; a connection
// lost before that reply delivers nothing.
package smtp

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/mail"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mailflow/mailflow/engine/plugin"

	"github.com/mailflow/mailflow/connectors/internal/endpoint"
	"github.com/mailflow/mailflow/connectors/internal/pool"
	"github.com/mailflow/mailflow/connectors/internal/rate"
	"github.com/mailflow/mailflow/connectors/internal/sasl"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/plugins"
)

//go:embed sample.conf
var sampleConfig string

func init() {
	plugins.AddOutput("smtp", func() plugin.Output { return &Output{} })
}

// Output sends messages to an SMTP server. Its exported fields are its config.
type Output struct {
	// address, tls, tls_*, username, password*, auth, allow_plaintext_auth,
	// timeout and the oauth2 keys.
	endpoint.Settings
	HeloName       string   `toml:"helo_name"`
	From           string   `toml:"from"`
	To             []string `toml:"to"`
	MaxConnections int      `toml:"max_connections"`
	Rate           string   `toml:"rate"`
	DataTimeout    string   `toml:"data_timeout"`
	EightBit       string   `toml:"eight_bit"`
	IdleTimeout    string   `toml:"idle_timeout"`
	Pipelining     *bool    `toml:"pipelining"`
	Forwarding              // srs_domain, rewrite_from, dkim_*, max_hops (forwarding.go)

	log     *slog.Logger
	env     plugin.Env
	dataFor time.Duration
	idleFor time.Duration
	limiter *rate.Limiter
	pool    *pool.Pool[*Client]
}

// protocol is what SMTP adds to the shared endpoint settings: STARTTLS on
// port 587 by default, no username for a relay without AUTH, the SASL
// mechanisms (or "auto"), and CRAM-MD5, which does not send the password,
// allowed in clear.
var protocol = endpoint.Protocol{
	DefaultTLS: "starttls", StartTLSPort: "587", ImplicitPort: "465",
	Timeout:          2 * time.Minute,
	UsernameOptional: true,
	SafeInClear:      []string{"cram-md5"},
	CheckAuth: func(auth string) error {
		if auth == "auto" {
			return nil
		}
		if _, err := sasl.New(auth, "", ""); err != nil {
			return fmt.Errorf("auth: %v", err)
		}
		return nil
	},
}

// SampleConfig returns the documented sample config.
func (*Output) SampleConfig() string { return sampleConfig }

// Provision implements plugin.Provisioner.
func (o *Output) Provision(env plugin.Env) error {
	o.log, o.env = env.Logger, env
	o.Settings.Provision(env)
	o.Forwarding.resolve(env.BaseDir)
	return nil
}

// Files implements plugin.FileUser: a changed password, CA, SRS secret or
// DKIM key file rebuilds the output on reload.
func (o *Output) Files() []string {
	return append(o.Settings.Files(), o.Forwarding.files()...)
}

// Init implements plugin.Initializer.
func (o *Output) Init() error {
	if o.Auth == "" {
		o.Auth = "auto"
	}
	if err := o.Settings.Init(protocol); err != nil {
		return err
	}
	for _, to := range o.To {
		if err := checkAddress(to); err != nil {
			return fmt.Errorf("to: %v", err)
		}
	}
	if o.From != "" {
		if err := checkAddress(o.From); err != nil {
			return fmt.Errorf("from: %v", err)
		}
	}
	o.Forwarding.noSecrets = o.env.NoSecrets
	if err := o.Forwarding.init(o.env.Instance, o.env.Name); err != nil {
		return err
	}
	if o.HeloName == "" {
		o.HeloName, _ = os.Hostname()
		if o.HeloName == "" || !strings.Contains(o.HeloName, ".") {
			o.HeloName = "localhost"
		}
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = 4
	}
	var err error
	if o.dataFor, err = parseDuration(o.DataTimeout, 10*time.Minute); err != nil {
		return fmt.Errorf("data_timeout: %v", err)
	}
	if o.idleFor, err = parseDuration(o.IdleTimeout, 30*time.Second); err != nil {
		return fmt.Errorf("idle_timeout: %v", err)
	}
	o.pool = pool.New(o.MaxConnections, o.idleFor, o.connect, func(c *Client) { c.Quit() }, func(c *Client) { c.Close() })
	o.pool.HoldDown(holdDown)
	switch o.EightBit {
	case "":
		o.EightBit = "convert"
	case "convert", "refuse":
	default:
		return fmt.Errorf("eight_bit must be \"convert\" or \"refuse\", not %q", o.EightBit)
	}
	if o.Rate != "" {
		if o.limiter, err = rate.Parse(o.Rate); err != nil {
			return err
		}
	}
	return nil
}

// holdDown is how long, after a connection failed (refused, STARTTLS
// missing or failing, a 421 or 554 greeting, a refused login), the
// messages already waiting for a session fail with that error instead of
// each connecting in turn (see pool.HoldDown). The engine backs off from
// the output once told of the failure, so new messages do not come; this
// is for the ones in flight. It is shorter than the engine's first
// back-off (5s), so that the engine's next try connects.
const holdDown = 3 * time.Second

func parseDuration(s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	return time.ParseDuration(s)
}

// checkAddress refuses what would break the SMTP command line.
func checkAddress(a string) error {
	if a == "" || strings.ContainsAny(a, "<>\r\n \t") {
		return fmt.Errorf("%q is not a bare address like user@example.com", a)
	}
	return nil
}

// connect opens, secures and authenticates a new session.
func (o *Output) connect(ctx context.Context) (*Client, error) {
	conn, err := o.Settings.Dial(ctx, nil)
	if err != nil {
		return nil, err
	}
	c, err := NewClient(conn, o.Wait())
	if err != nil {
		return nil, err
	}
	c.NoPipelining = o.Pipelining != nil && !*o.Pipelining
	c.DataTimeout = o.dataFor
	fail := func(err error) (*Client, error) {
		c.Close()
		return nil, err
	}
	if err := c.Hello(o.HeloName); err != nil {
		return fail(err)
	}
	if o.TLS == "starttls" {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			// A relay that offered it before and does not now has a
			// problem of its own (a missing certificate, an overload);
			// the message waits at its source, never goes in clear.
			return fail(fmt.Errorf("smtp: %s does not offer STARTTLS now and tls = \"starttls\"; not going on in clear, trying again later", o.Address))
		}
		if err := c.StartTLS(o.TLSConfig()); err != nil {
			return fail(err)
		}
	}
	if o.Username != "" {
		if err := o.authenticate(ctx, c); err != nil {
			return fail(err)
		}
	}
	return c, nil
}

// Probe implements plugin.Prober: a session opened, secured and logged
// into as for a delivery, then QUIT, for "mailflow check --connect".
func (o *Output) Probe(ctx context.Context) error {
	c, err := o.connect(ctx)
	if err != nil {
		return err
	}
	return c.Quit()
}

func (o *Output) authenticate(ctx context.Context, c *Client) error {
	_, offered := c.Extension("AUTH")
	mechs := strings.Fields(strings.ToUpper(offered))
	if o.Tokens() != nil {
		return o.authenticateOAuth(ctx, c, mechs)
	}
	name := strings.ToUpper(o.Auth)
	if name == "AUTO" {
		name = ""
		for _, pref := range []string{"PLAIN", "LOGIN", "CRAM-MD5"} {
			if slices.Contains(mechs, pref) {
				name = pref
				break
			}
		}
		if name == "" {
			// Postfix stops offering AUTH when its SASL backend is down:
			// a state of the server, not of the message.
			return fmt.Errorf("smtp: %s offers no AUTH mechanism we speak now (offered: %q); trying again later", o.Address, offered)
		}
	}
	if !c.IsTLS() && sasl.SendsSecret(name) && !o.AllowPlaintextAuth {
		return plugin.Permanent(errors.New("smtp: refusing to send the password over a connection without TLS (allow_plaintext_auth = false)"))
	}
	m, err := sasl.New(name, o.Username, o.Secret())
	if err != nil {
		return err
	}
	err = c.Auth(m)
	var se *Error
	if errors.As(err, &se) && se.Code == 535 {
		// The server checked the password and said no: only a person can
		// fix that. Every other refusal (454 temporary failure, 421) is
		// the server's state, tried again later.
		return plugin.Permanent(err)
	}
	if se != nil {
		return &authError{err}
	}
	return err
}

// authenticateOAuth logs in with an access token: OAUTHBEARER where the
// server offers it, else XOAUTH2. A refused token is replaced by a fresh
// one once; a refusal after that, or a token that cannot be had, is
// temporary: the messages wait at their source until a person logs in
// again (the error says how).
func (o *Output) authenticateOAuth(ctx context.Context, c *Client, mechs []string) error {
	if !c.IsTLS() && !o.AllowPlaintextAuth {
		return errors.New("smtp: refusing to send an access token over a connection without TLS (allow_plaintext_auth = false)")
	}
	refused := func(err error) bool {
		var se *Error
		return errors.As(err, &se)
	}
	_, err := o.LoginOAuth(ctx, slices.Contains(mechs, "OAUTHBEARER"), c.Auth, refused)
	if refused(err) {
		return &authError{err}
	}
	return err
}

// authError is an AUTH refusal other than 535: temporary whatever its code
// (a 5xx such as 534 "mechanism too weak" from a misconfigured relay must
// not drain a mailbox into the quarantine).
type authError struct{ err error }

func (e *authError) Error() string   { return e.err.Error() }
func (e *authError) Unwrap() error   { return e.err }
func (e *authError) Permanent() bool { return false }

// Deliver implements plugin.Output.
func (o *Output) Deliver(ctx context.Context, msg *message.Message, d plugin.Delivery) ([]plugin.RecipientResult, error) {
	rcpts := d.Recipients
	if len(rcpts) == 0 {
		rcpts = o.To
	}
	var todo []string
	for _, r := range rcpts {
		if !slices.Contains(d.Done, r) {
			todo = append(todo, r)
		}
	}
	if len(todo) == 0 {
		if len(rcpts) == 0 {
			return nil, plugin.Permanent(errors.New("no recipients: set to = [...] on the output, or redirect in a script"))
		}
		return nil, nil // every recipient has it already
	}
	for _, r := range todo {
		if err := checkAddress(r); err != nil {
			return nil, plugin.Permanent(fmt.Errorf("recipient: %v", err))
		}
	}
	if err := o.checkLoop(msg); err != nil {
		return nil, err
	}
	open, size, err := o.outgoing(msg)
	if err != nil {
		return nil, err
	}
	from := o.envelopeSender(o.sender(msg), o.From != "")
	env := Envelope{From: from, To: todo, Size: size,
		SMTPUTF8: !isASCII(from) || slices.ContainsFunc(todo, func(s string) bool { return !isASCII(s) })}
	if o.limiter != nil {
		if err := o.limiter.Wait(ctx); err != nil {
			return nil, err
		}
	}
	// A pooled session may have been closed by the server while idle; that
	// shows on the first command, before anything was accepted, so one
	// more try on a fresh session is safe.
	for attempt := 0; ; attempt++ {
		c, err := o.pool.Get(ctx)
		if err != nil {
			return nil, err
		}
		env, body, err := o.prepare(c, env, msg, open)
		if err != nil {
			o.pool.Put(c, c.Broken)
			return nil, err
		}
		if o.dkim != nil {
			// Signed last, over exactly what goes out: after every script,
			// the trace field, rewrite_from and any 7-bit conversion.
			sig, err := o.sign(body)
			if err != nil {
				o.pool.Put(c, c.Broken)
				return nil, fmt.Errorf("dkim: %v", err)
			}
			unsigned := body
			body = func() io.Reader { return io.MultiReader(bytes.NewReader(sig), unsigned()) }
			env.Size += int64(len(sig))
		}
		results, err := c.Send(env, body())
		var lost *ReplyLostError
		if errors.As(err, &lost) {
			o.pool.Put(c, c.Broken)
			return nil, plugin.InDoubt(err)
		}
		if err != nil {
			var se *Error
			stale := attempt == 0 && c.Broken && !errors.As(err, &se)
			if !c.Broken {
				c.Reset()
			}
			o.pool.Put(c, c.Broken)
			if stale && !c.DataStarted {
				continue
			}
			return nil, err
		}
		if slices.ContainsFunc(results, func(r RcptResult) bool { return r.Err != nil }) && !c.Broken {
			c.Reset() // a transaction without DATA must be reset (RFC 5321 4.1.1.5)
		}
		o.pool.Put(c, c.Broken)
		out := make([]plugin.RecipientResult, len(results))
		for i, r := range results {
			out[i] = plugin.RecipientResult{Recipient: r.To, Err: r.Err}
		}
		return out, nil
	}
}

// prepare fits the message to what this server takes, before any data
// goes out: its size; 8-bit content as BODY=8BITMIME, or converted to
// 7-bit MIME where the server lacks 8BITMIME (unless eight_bit = "refuse");
// SMTPUTF8 where RFC 6531 needs it. It returns the envelope to send with and
// the bytes to send.
//
// SMTPUTF8 is asked for when an envelope address is not ASCII (then it is
// required), and when the header holds UTF-8 and the server offers it (RFC
// 6532). A header with 8-bit bytes that are not UTF-8 (a raw Latin-1
// Subject) or sent to a server without SMTPUTF8 goes as legacy 8-bit data
// under BODY=8BITMIME, as Postfix relays it.
func (o *Output) prepare(c *Client, env Envelope, msg *message.Message, open func() io.Reader) (Envelope, func() io.Reader, error) {
	if ok, v := c.Extension("SIZE"); ok && v != "" {
		if max, err := strconv.ParseInt(v, 10, 64); err == nil && max > 0 && env.Size > max {
			return env, nil, plugin.Permanent(fmt.Errorf("smtp: message is %d bytes; %s takes at most %d (SIZE)", env.Size, o.Address, max))
		}
	}
	hasUTF8, _ := c.Extension("SMTPUTF8")
	if env.SMTPUTF8 && !hasUTF8 {
		return env, nil, plugin.Permanent(fmt.Errorf("smtp: an envelope address is not ASCII and %s does not offer SMTPUTF8", o.Address))
	}
	any8, hdr8 := msg.EightBit()
	if hdr8 && hasUTF8 {
		var h bytes.Buffer
		msg.Header.WriteTo(&h)
		env.SMTPUTF8 = env.SMTPUTF8 || utf8.Valid(h.Bytes())
	}
	if !any8 {
		return env, open, nil
	}
	if ok, _ := c.Extension("8BITMIME"); ok {
		env.EightBit = true
		return env, open, nil
	}
	if o.EightBit == "refuse" {
		return env, nil, plugin.Permanent(fmt.Errorf("smtp: message has 8-bit content and %s does not offer 8BITMIME (eight_bit = \"refuse\")", o.Address))
	}
	raw, err := io.ReadAll(io.LimitReader(open(), maxConvert+1))
	if err != nil {
		return env, nil, err
	}
	conv, err := to7Bit(raw)
	if err != nil {
		return env, nil, plugin.Permanent(fmt.Errorf("smtp: %s does not offer 8BITMIME and the message %v", o.Address, err))
	}
	o.log.Info("converted an 8-bit message to 7-bit MIME for a server without 8BITMIME", "server", o.Address, "message_id", msg.MessageID(), "bytes", len(raw), "converted", len(conv))
	env.Size = int64(len(conv))
	return env, func() io.Reader { return bytes.NewReader(conv) }, nil
}

// sender is the envelope sender: the null sender when the message has one
// (a script set it, or it came with Return-Path: <>: a bounce, an
// auto-reply), which nothing replaces, lest a bounce be answered; else the
// configured from, else the message's envelope, Return-Path or From.
func (o *Output) sender(msg *message.Message) string {
	if msg.Envelope.Sender == message.NullSender || strings.TrimSpace(msg.Header.Get("Return-Path")) == "<>" {
		return ""
	}
	if o.From != "" {
		return o.From
	}
	if msg.Envelope.Sender != "" {
		return msg.Envelope.Sender
	}
	for _, h := range []string{"Return-Path", "From"} {
		v := strings.TrimSpace(msg.Header.Get(h))
		if a, err := mail.ParseAddress(v); err == nil && checkAddress(a.Address) == nil {
			return a.Address
		}
	}
	return ""
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// Close implements plugin.Closer: it ends every idle session with QUIT.
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
)
