// Package smtpd receives mail: the "smtp" and "lmtp" inputs, on the server
// of emersion/go-smtp. Each listens on its address (TCP, or for LMTP a
// Unix socket too) for as long as mailflow runs, writes every message it
// takes into a spool under state_dir, synced, before it answers 250, and
// wakes the engine, which takes the spool through the pipeline at once,
// as it would a Maildir. So mailflow can sit where mail is received: a
// Postfix content filter, a relay that accepts mail for a domain and
// forwards it, the LMTP target a mail server delivers to.
//
// With answer = "after_delivery" the client's answer waits until the
// pipeline delivered or refused its message (answer.go), and a refusal
// goes back to the sending server as a 5xx.
package smtpd

import (
	"context"
	"crypto/tls"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/internal/fscheck"
	"github.com/mailflow/mailflow/plugins"
)

//go:embed sample.conf
var sampleConfig string

func init() {
	plugins.AddInput("smtp", func() plugin.Input { return &Input{} })
	plugins.AddInput("lmtp", func() plugin.Input { return &Input{lmtp: true} })
}

// Input receives mail over SMTP or LMTP. Its exported fields are its
// config (sample.conf says what each means, with its default).
type Input struct {
	Address          string    `toml:"address"`
	Hostname         string    `toml:"hostname"`
	Answer           string    `toml:"answer"`
	AnswerTimeout    string    `toml:"answer_timeout"`
	AcceptRecipients []string  `toml:"accept_recipients"`
	AcceptDomains    []string  `toml:"accept_domains"`
	TrustedNetworks  *[]string `toml:"trusted_networks"`

	TLS               string `toml:"tls"`
	TLSCertFile       string `toml:"tls_cert_file"`
	TLSKeyFile        string `toml:"tls_key_file"`
	RequireTLS        bool   `toml:"require_tls"`
	UsersFile         string `toml:"users_file"`
	RequireAuth       bool   `toml:"require_auth"`
	AllowInsecureAuth bool   `toml:"allow_insecure_auth"`

	MaxConnections          *int   `toml:"max_connections"`
	MaxConnectionsPerClient *int   `toml:"max_connections_per_client"`
	ConnectionRate          string `toml:"connection_rate_per_client"`
	MessageRate             string `toml:"message_rate_per_client"`
	MaxRecipients           *int   `toml:"max_recipients"`
	MaxErrors               *int   `toml:"max_errors"`
	AuthFailureLimit        string `toml:"auth_failure_limit"`
	AuthFailureDelay        string `toml:"auth_failure_delay"`
	Timeout                 string `toml:"timeout"`
	MinDataRate             *int   `toml:"min_data_rate"`
	MaxSpoolSize            *int64 `toml:"max_spool_size"`
	SocketMode              string `toml:"socket_mode"`

	lmtp      bool
	noSecrets bool // "mailflow check --no-secrets": name the files, read none
	log       *slog.Logger
	name      string
	spoolDir  string
	// network and addr are where to listen ("tcp" or "unix").
	network, addr string

	afterDelivery     bool
	answerTimeout     time.Duration
	timeout           time.Duration
	authFailureDelay  time.Duration
	maxSize           int64 // of a message's data, SIZE
	maxConns, perConn int
	maxRcpt, maxErrs  int
	minDataRate       int
	maxSpool          int64
	socketMode        os.FileMode
	connRate, msgRate *rate
	authFails         *rate
	trusted           []*net.IPNet
	acceptRcpt        map[string]bool
	acceptDomain      map[string]bool
	tlsConfig         *tls.Config
	users             *users
	files             []string

	free freeCache // the spool disk's free space, for roomFor

	mu      sync.Mutex
	spool   *spool
	srv     *server
	stopped bool
}

// SampleConfig returns the documented sample config of both inputs.
func (*Input) SampleConfig() string { return sampleConfig }

// Provision implements plugin.Provisioner.
func (in *Input) Provision(env plugin.Env) error {
	in.log, in.name, in.noSecrets = env.Logger, env.Name, env.NoSecrets
	if in.log == nil {
		in.log = slog.Default()
	}
	in.spoolDir = filepath.Join(env.StateDir, "smtpd", env.Name)
	in.maxSize = env.Spool.MaxSize
	resolve := func(p string) string {
		if p != "" && !filepath.IsAbs(p) {
			return filepath.Join(env.BaseDir, p)
		}
		return p
	}
	in.TLSCertFile, in.TLSKeyFile, in.UsersFile = resolve(in.TLSCertFile), resolve(in.TLSKeyFile), resolve(in.UsersFile)
	if after, ok := strings.CutPrefix(in.Address, "unix:"); ok {
		in.network, in.addr = "unix", resolve(after)
	} else {
		in.network, in.addr = "tcp", in.Address
	}
	return nil
}

// traceReserve is room kept in max_message_size for the Received field
// mailflow adds: the engine takes a message of at most max_message_size,
// trace included.
const traceReserve = 2048

// defaultMaxSize bounds a message when max_message_size is 0 (no limit):
// a listener that takes any size would let one client fill the disk.
const defaultMaxSize = 50 << 20

// Init implements plugin.Initializer: it checks every key and reads the
// files named (certificate, users), which a change of makes mailflow
// rebuild the input.
func (in *Input) Init() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if in.Address == "" {
		bad("address is required (host:port%s)", map[bool]string{true: ", or unix:/path/to/socket", false: ""}[in.lmtp])
	} else if in.network == "unix" && !in.lmtp {
		bad("address %q: a Unix socket is for type = \"lmtp\"; an smtp input listens on host:port", in.Address)
	} else if in.network == "tcp" {
		if _, _, err := net.SplitHostPort(in.addr); err != nil {
			bad("address %q: want host:port (\"127.0.0.1:10025\")", in.Address)
		}
	}
	if in.Hostname == "" {
		in.Hostname, _ = os.Hostname()
		if in.Hostname == "" {
			in.Hostname = "localhost"
		}
	}
	switch in.Answer {
	case "", "after_spool":
	case "after_delivery":
		in.afterDelivery = true
	default:
		bad("answer %q: want \"after_spool\" (250 once the message is on disk) or \"after_delivery\" (250 or 5xx once the pipeline delivered or refused it)", in.Answer)
	}
	dur := func(key, s, def string, d *time.Duration) {
		if s == "" {
			s = def
		}
		v, err := time.ParseDuration(s)
		if err != nil || v < 0 {
			bad("%s %q: want a duration like \"30s\" or \"5m\"", key, s)
		}
		*d = v
	}
	dur("answer_timeout", in.AnswerTimeout, "5m", &in.answerTimeout)
	dur("timeout", in.Timeout, "5m", &in.timeout)
	dur("auth_failure_delay", in.AuthFailureDelay, "1s", &in.authFailureDelay)
	num := func(key string, p *int, def int, v *int) {
		*v = def
		if p != nil {
			*v = *p
		}
		if *v < 0 {
			bad("%s = %d: want 0 (no limit) or more", key, *v)
		}
	}
	num("max_connections", in.MaxConnections, 100, &in.maxConns)
	num("max_connections_per_client", in.MaxConnectionsPerClient, 20, &in.perConn)
	num("max_recipients", in.MaxRecipients, 1000, &in.maxRcpt)
	num("max_errors", in.MaxErrors, 20, &in.maxErrs)
	num("min_data_rate", in.MinDataRate, 500, &in.minDataRate)
	in.maxSpool = 1 << 30
	if in.MaxSpoolSize != nil {
		in.maxSpool = *in.MaxSpoolSize
	}
	var err error
	if in.connRate, err = parseRate(in.ConnectionRate); err != nil {
		bad("connection_rate_per_client: %v", err)
	}
	if in.msgRate, err = parseRate(in.MessageRate); err != nil {
		bad("message_rate_per_client: %v", err)
	}
	limit := in.AuthFailureLimit
	if limit == "" {
		limit = "5/10m"
	}
	if in.authFails, err = parseRate(limit); err != nil {
		bad("auth_failure_limit: %v", err)
	}
	if in.maxSize <= 0 {
		in.maxSize = defaultMaxSize
	}
	if in.maxSize <= traceReserve {
		bad("max_message_size %d is too small to receive mail in", in.maxSize)
	}
	in.maxSize -= traceReserve
	nets := []string{"127.0.0.0/8", "::1/128"}
	if in.TrustedNetworks != nil {
		nets = *in.TrustedNetworks
	}
	for _, n := range nets {
		if !strings.Contains(n, "/") {
			if ip := net.ParseIP(n); ip != nil && ip.To4() != nil {
				n += "/32"
			} else {
				n += "/128"
			}
		}
		_, ipn, err := net.ParseCIDR(n)
		if err != nil {
			bad("trusted_networks: %q is not an address or a network like \"192.0.2.0/24\"", n)
			continue
		}
		in.trusted = append(in.trusted, ipn)
	}
	in.acceptRcpt, in.acceptDomain = map[string]bool{}, map[string]bool{}
	for _, a := range in.AcceptRecipients {
		if !strings.Contains(a, "@") {
			bad("accept_recipients: %q is not an address (for a whole domain, use accept_domains)", a)
		}
		in.acceptRcpt[strings.ToLower(a)] = true
	}
	for _, d := range in.AcceptDomains {
		if d == "" || strings.Contains(d, "@") {
			bad("accept_domains: %q is not a domain", d)
		}
		in.acceptDomain[strings.ToLower(strings.TrimPrefix(d, "@"))] = true
	}
	mode := in.SocketMode
	if mode == "" {
		mode = "0660"
	}
	if m, err := strconv.ParseUint(mode, 8, 32); err != nil || m > 0o777 {
		bad("socket_mode %q: want an octal mode like \"0660\"", in.SocketMode)
	} else {
		in.socketMode = os.FileMode(m)
	}
	if err := in.initTLS(); err != nil {
		errs = append(errs, err)
	}
	if in.UsersFile != "" && in.noSecrets {
		in.users = &users{}
	} else if in.UsersFile != "" {
		if in.users, err = loadUsers(in.UsersFile); err != nil {
			bad("users_file: %v", err)
		}
		in.files = append(in.files, in.UsersFile)
	}
	if in.RequireAuth && in.users == nil {
		bad("require_auth = true needs a users_file to authenticate against")
	}
	if in.users != nil && in.tlsConfig == nil && !in.AllowInsecureAuth {
		bad("users_file: AUTH is offered only over TLS: set tls = \"starttls\" or \"implicit\" with a certificate, or allow_insecure_auth = true (passwords in clear text)")
	}
	if in.RequireTLS && in.tlsConfig == nil {
		bad("require_tls = true needs tls = \"starttls\" or \"implicit\" with tls_cert_file and tls_key_file")
	}
	return errors.Join(errs...)
}

// initTLS loads the certificate for STARTTLS or implicit TLS.
func (in *Input) initTLS() error {
	switch in.TLS {
	case "", "none":
		if in.TLSCertFile != "" || in.TLSKeyFile != "" {
			if in.TLS == "none" {
				return errors.New("tls = \"none\" with a certificate: set tls = \"starttls\" (or \"implicit\") to use it")
			}
			in.TLS = "starttls"
		} else {
			in.TLS = "none"
			return nil
		}
	case "starttls", "implicit":
	default:
		return fmt.Errorf("tls %q: want \"none\", \"starttls\" (offered, or required with require_tls) or \"implicit\" (TLS from the start, port 465)", in.TLS)
	}
	if in.TLSCertFile == "" || in.TLSKeyFile == "" {
		return fmt.Errorf("tls = %q needs tls_cert_file and tls_key_file", in.TLS)
	}
	in.files = append(in.files, in.TLSCertFile, in.TLSKeyFile)
	if in.noSecrets {
		in.tlsConfig = &tls.Config{}
		return nil
	}
	cert, err := tls.LoadX509KeyPair(in.TLSCertFile, in.TLSKeyFile)
	if err != nil {
		return fmt.Errorf("tls_cert_file, tls_key_file: %v", err)
	}
	in.tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	return nil
}

// Files implements plugin.FileUser: a new certificate or users file makes
// mailflow rebuild the input, and the new one takes the listener over
// without closing it.
func (in *Input) Files() []string { return in.files }

// Check implements plugin.Checker: the socket's directory exists.
func (in *Input) Check() error {
	if in.network == "unix" {
		if err := fscheck.Writable(filepath.Dir(in.addr)); err != nil {
			return fmt.Errorf("address: the socket's directory: %v", err)
		}
	}
	return nil
}

// Probe implements plugin.Prober: the address can be listened on.
func (in *Input) Probe(ctx context.Context) error {
	if l := sharedListener(in.network, in.addr); l != nil {
		return nil // this process listens there already
	}
	if in.network == "unix" {
		return fscheck.Writable(filepath.Dir(in.addr))
	}
	ln, err := net.Listen("tcp", in.addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s (is mailflow already running?): %w", in.addr, err)
	}
	return ln.Close()
}

// Start implements plugin.Starter. When this process listens on the
// address already, this input is a reload's rebuilt one: it takes the
// listener over now, before the config is swapped in, so that no
// connection is refused meanwhile. Otherwise listening waits for the
// first poll (Open), so that "mailflow quarantine resend", which builds
// and starts every input, neither listens nor touches the spool.
func (in *Input) Start(ctx context.Context) error {
	if sharedListener(in.network, in.addr) == nil {
		return nil
	}
	return in.start()
}

// start opens the spool and starts listening, once.
func (in *Input) start() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.stopped {
		return errors.New("the input is closed")
	}
	if in.srv != nil {
		return nil
	}
	if in.spool == nil {
		sp, err := openSpool(in.spoolDir, in.log)
		if err != nil {
			return fmt.Errorf("spool %s: %w", in.spoolDir, err)
		}
		in.spool = sp
	}
	srv, err := in.serve()
	if err != nil {
		return err
	}
	in.srv = srv
	return nil
}

// Close implements plugin.Closer: it stops taking connections (a reload's
// new input may have taken the listener over already), lets the messages
// being received finish, and lets go of the spool.
func (in *Input) Close() error {
	in.mu.Lock()
	srv, sp := in.srv, in.spool
	in.srv, in.spool, in.stopped = nil, nil, true
	in.mu.Unlock()
	if sp != nil && sp.lastHolder() {
		// mailflow is stopping, not reloading: no poll will answer the
		// clients waiting for their outcome (after_delivery), so they
		// are told now, and their transactions can end.
		sp.stopWaiting("mailflow is stopping")
	}
	if srv != nil {
		srv.stop()
	}
	if sp != nil {
		sp.release()
	}
	return nil
}

var (
	_ plugin.Input       = (*Input)(nil)
	_ plugin.Provisioner = (*Input)(nil)
	_ plugin.Initializer = (*Input)(nil)
	_ plugin.FileUser    = (*Input)(nil)
	_ plugin.Checker     = (*Input)(nil)
	_ plugin.Prober      = (*Input)(nil)
	_ plugin.Closer      = (*Input)(nil)
	_ plugin.Starter     = (*Input)(nil)
	_ plugin.MailWaiter  = (*Input)(nil)
)
