// Package gmail is mailflow's Gmail API output: it puts each message into
// a Gmail mailbox with users.messages.import, as received mail (Gmail's
// spam classifier sees it, its Date is kept as Gmail's date), with labels
// from the config, from the source's flags and from the scripts.
//
// It exists because Gmail no longer fetches mail from other accounts (POP
// "check mail from other accounts", Gmailify): forwarding breaks under
// DMARC, and IMAP APPEND into Gmail is capped at about 500 MB a day and
// gives no INBOX, UNREAD or label semantics.
//
// A message is accepted only once the API answered with the new message's
// id; a reply lost after the message was sent makes the delivery in doubt,
// and the next try looks for the Message-ID (messages.list,
// q=rfc822msgid:) before importing again. A 429 or a 403 rate limit makes
// the message wait at its source for as long as the API asked
// (plugin.Throttled); a 5xx, a network error or a refused login likewise
// leave it there. Only what Gmail can never take (a message over its size
// limit, a message it cannot parse) is refused for good.
package gmail

import (
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailflow/mailflow/connectors/oauth"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/plugins"
)

//go:embed sample.conf
var sampleConfig string

func init() {
	plugins.AddOutput("gmail", func() plugin.Output { return &Output{} })
}

// The OAuth scopes that matter here (Google's discovery document for
// gmail v1 names, per method, the scopes that allow it).
const (
	// ScopeModify allows import, labels.list, labels.create and a search
	// with messages.list: everything this output does. The default.
	ScopeModify = "https://www.googleapis.com/auth/gmail.modify"
	// ScopeInsert allows import only: no labels but the system ones, and
	// no search before an in-doubt message is imported again.
	ScopeInsert = "https://www.googleapis.com/auth/gmail.insert"
	// ScopeLabels allows labels.list and labels.create (with ScopeInsert).
	ScopeLabels = "https://www.googleapis.com/auth/gmail.labels"
	// ScopeReadonly allows the search (with ScopeInsert).
	ScopeReadonly = "https://www.googleapis.com/auth/gmail.readonly"
	// ScopeFull is IMAP's and SMTP's scope, and allows everything.
	ScopeFull = "https://mail.google.com/"
)

// Defaults.
const (
	DefaultAPIURL = "https://gmail.googleapis.com"
	// DefaultMaxMessageSize is Gmail's limit for users.messages.import:
	// "the maximum message size is 150 MB" (its reference page).
	DefaultMaxMessageSize = 150 << 20
	// DefaultResumableAbove is where the resumable upload takes over from
	// the one-request upload: Google's advice is to use it for files over
	// 5 MB, which a dropped connection would otherwise send again whole.
	DefaultResumableAbove = 5 << 20
	// DefaultQuotaUnits is Gmail's per-user rate limit: 15,000 quota units
	// a minute, 250 a second.
	DefaultQuotaUnits   = 250
	DefaultLabelsHeader = "X-Mailflow-Labels"
)

// Quota units per method, from Gmail's usage limits page.
const (
	unitsImport       = 25
	unitsMessagesList = 5
	unitsLabelsList   = 1
	unitsLabelsCreate = 5
)

// Output imports messages into one Gmail mailbox. Its exported fields are
// its config.
type Output struct {
	// Username is the Gmail account's address: the account the token is
	// for (the API is called for "me"), named in logs and in "mailflow
	// auth status".
	Username string `toml:"username"`
	// The OAuth keys (oauth2_provider, client_id, client_secret_file,
	// scopes, refresh_before; auth_url, token_url, device_url for
	// "custom"), as the IMAP and SMTP connectors have them. The provider
	// defaults to "google", the scopes to gmail.modify.
	oauth.Config
	// APIURL is the API's base address (a test's fake).
	APIURL string `toml:"api_url"`
	// Labels are given to every message, by name; created if missing.
	Labels []string `toml:"labels"`
	// Inbox and Unread add INBOX and UNREAD (default true each); false
	// both, with labels = ["Imported"], is an archive-only migration.
	Inbox  *bool `toml:"inbox"`
	Unread *bool `toml:"unread"`
	// MapFlags maps the source's flags (default true): \Seen leaves
	// UNREAD off, \Flagged adds STARRED.
	MapFlags *bool `toml:"map_flags"`
	// LabelsHeader is the header field a script sets to label a message
	// (comma-separated names); it is removed before the import. The same
	// field arriving from the source is removed and ignored. "" takes the
	// default; "-" turns it off.
	LabelsHeader string `toml:"labels_header"`
	// NeverMarkSpam overrides Gmail's spam classifier (default false).
	NeverMarkSpam bool `toml:"never_mark_spam"`
	// ProcessForCalendar adds the invitations in a message to the
	// account's Google Calendar (default false).
	ProcessForCalendar bool `toml:"process_for_calendar"`
	// InternalDateSource is "dateHeader" (default: Gmail dates the message
	// by its Date field) or "receivedTime" (by the import).
	InternalDateSource string `toml:"internal_date_source"`
	// AddMessageID gives a message without a Message-ID one, made from its
	// Date, From, Subject and size (default true), so that a delivery in
	// doubt can be looked for before it is imported again.
	AddMessageID *bool `toml:"add_message_id"`
	// MaxMessageSize refuses larger messages for good; default 150 MiB.
	MaxMessageSize int64 `toml:"max_message_size"`
	// ResumableAbove: larger messages go by resumable upload; default 5 MiB.
	ResumableAbove int64 `toml:"resumable_above"`
	// QuotaUnitsPerSecond paces the requests (import costs 25 units);
	// default 250, Gmail's per-user limit.
	QuotaUnitsPerSecond int `toml:"quota_units_per_second"`
	// MaxConcurrent is how many requests may be under way at once;
	// default 4.
	MaxConcurrent int `toml:"max_concurrent"`
	// Timeout bounds the wait for the API's reply, and an upload that
	// makes no progress; default "2m".
	Timeout string `toml:"timeout"`

	log      *slog.Logger
	env      plugin.Env
	base     string
	tokens   *oauth.Source
	client   *http.Client
	timeout  time.Duration
	can      abilities
	quota    *quota
	slots    chan struct{}
	labels   labelCache
	sysNames map[string]string // upper-case name → system label id

	throttles  atomic.Int64 // throttling replies in a row, for the back-off without Retry-After
	quietMu    sync.Mutex
	quietUntil time.Time // the API asked to be left alone until then
}

// abilities are what the granted scopes allow.
type abilities struct {
	labels bool // labels.list and labels.create
	search bool // messages.list with q
}

// SampleConfig returns the documented sample config.
func (*Output) SampleConfig() string { return sampleConfig }

// Provision implements plugin.Provisioner.
func (o *Output) Provision(env plugin.Env) error {
	o.log, o.env = env.Logger, env
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Init implements plugin.Initializer: it checks the config, reads the
// client secret, and sets up the token source and the HTTP client. No I/O
// but reading the secret.
func (o *Output) Init() error {
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.Username == "" {
		return errors.New("username is required (the Gmail account's address)")
	}
	if o.Provider == "" {
		o.Provider = "google"
	}
	switch strings.ToLower(o.Provider) {
	case "google", "custom":
	default:
		return fmt.Errorf(`oauth2_provider must be "google" (or "custom" for a stand-in), not %q`, o.Provider)
	}
	if len(o.Scopes) == 0 {
		o.Scopes = []string{ScopeModify}
	}
	o.Config.NoSecrets = o.env.NoSecrets
	if err := o.Config.Init(o.env.BaseDir); err != nil {
		return err
	}
	o.Config.Account = o.Username
	var err error
	if o.can, err = scopeAbilities(o.Scopes); err != nil {
		return err
	}
	if o.base, err = checkAPIURL(o.APIURL); err != nil {
		return err
	}
	switch o.InternalDateSource {
	case "":
		o.InternalDateSource = "dateHeader"
	case "dateHeader", "receivedTime":
	default:
		return fmt.Errorf(`internal_date_source must be "dateHeader" or "receivedTime", not %q`, o.InternalDateSource)
	}
	switch o.LabelsHeader {
	case "":
		o.LabelsHeader = DefaultLabelsHeader
	case "-":
	default:
		if strings.ContainsAny(o.LabelsHeader, ": \t\r\n") {
			return fmt.Errorf("labels_header %q is no header field name", o.LabelsHeader)
		}
	}
	o.sysNames = map[string]string{}
	for _, id := range systemLabels {
		o.sysNames[id] = id
	}
	for _, l := range o.Labels {
		if strings.TrimSpace(l) == "" {
			return errors.New("labels: an empty label name")
		}
		if !o.can.labels && o.systemID(l) == "" {
			return fmt.Errorf("labels: %q is no system label, and the scopes given (%s) cannot list or create labels; add %s, or use %s",
				l, strings.Join(o.Scopes, " "), ScopeLabels, ScopeModify)
		}
	}
	if o.MaxMessageSize == 0 {
		o.MaxMessageSize = DefaultMaxMessageSize
	}
	if o.ResumableAbove == 0 {
		o.ResumableAbove = DefaultResumableAbove
	}
	if o.QuotaUnitsPerSecond == 0 {
		o.QuotaUnitsPerSecond = DefaultQuotaUnits
	}
	if o.MaxConcurrent == 0 {
		o.MaxConcurrent = 4
	}
	switch {
	case o.MaxMessageSize < 0:
		return errors.New("max_message_size must not be negative")
	case o.ResumableAbove < 0:
		return errors.New("resumable_above must not be negative")
	case o.QuotaUnitsPerSecond < unitsImport:
		return fmt.Errorf("quota_units_per_second must be at least %d (one import), not %d", unitsImport, o.QuotaUnitsPerSecond)
	case o.MaxConcurrent < 0:
		return errors.New("max_concurrent must not be negative")
	}
	o.timeout = 2 * time.Minute
	if o.Timeout != "" {
		if o.timeout, err = time.ParseDuration(o.Timeout); err != nil || o.timeout <= 0 {
			return fmt.Errorf("timeout %q: give a duration such as \"2m\"", o.Timeout)
		}
	}
	o.quota = newQuota(o.QuotaUnitsPerSecond)
	o.slots = make(chan struct{}, o.MaxConcurrent)
	o.tokens = oauth.NewSource(&o.Config, oauth.NewStore(o.env.StateDir), o.env.Name, o.env.ConfigPath)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = o.timeout
	tr.MaxIdleConnsPerHost = o.MaxConcurrent
	o.client = &http.Client{Transport: tr,
		// A redirect is never part of this API; following one would
		// send a message somewhere it was not meant to go.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return nil
}

// scopeAbilities says what the scopes allow, and refuses scopes that do
// not allow an import. Scopes that are no Gmail scope at all (a "custom"
// provider standing in for Google) are taken to allow everything.
func scopeAbilities(scopes []string) (abilities, error) {
	has := func(s ...string) bool {
		return slices.ContainsFunc(scopes, func(g string) bool { return slices.Contains(s, g) })
	}
	if !slices.ContainsFunc(scopes, func(s string) bool {
		return s == ScopeFull || strings.HasPrefix(s, "https://www.googleapis.com/auth/gmail.")
	}) {
		return abilities{labels: true, search: true}, nil
	}
	if !has(ScopeFull, ScopeModify, ScopeInsert) {
		return abilities{}, fmt.Errorf("scopes %v do not allow users.messages.import: give %s (or %s)", scopes, ScopeModify, ScopeInsert)
	}
	return abilities{labels: has(ScopeFull, ScopeModify, ScopeLabels), search: has(ScopeFull, ScopeModify, ScopeReadonly)}, nil
}

// checkAPIURL returns the API's base address without a trailing slash.
// Plain http is allowed only to this machine: the bearer token and the
// mail would go in clear.
func checkAPIURL(s string) (string, error) {
	if s == "" {
		return DefaultAPIURL, nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("api_url %q is no base address such as %s", s, DefaultAPIURL)
	}
	switch u.Scheme {
	case "https":
	case "http":
		ip := net.ParseIP(u.Hostname())
		if u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return "", fmt.Errorf("api_url %q: http only to this machine (127.0.0.1, localhost); use https", s)
		}
	default:
		return "", fmt.Errorf("api_url %q: the scheme must be https", s)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// Files implements plugin.FileUser: a changed client secret file
// rebuilds the output on reload.
func (o *Output) Files() []string { return o.Config.Files() }

// OAuth implements oauth.User: "mailflow auth login" logs this output in.
func (o *Output) OAuth() *oauth.Config { return &o.Config }

// Tokens implements oauth.User.
func (o *Output) Tokens() *oauth.Source { return o.tokens }

// Close implements plugin.Closer.
func (o *Output) Close() error {
	if o.client != nil {
		o.client.CloseIdleConnections()
	}
	return nil
}

func on(b *bool) bool { return b == nil || *b }

var (
	_ plugin.Output      = (*Output)(nil)
	_ plugin.Provisioner = (*Output)(nil)
	_ plugin.Initializer = (*Output)(nil)
	_ plugin.FileUser    = (*Output)(nil)
	_ plugin.Closer      = (*Output)(nil)
	_ oauth.User         = (*Output)(nil)
)
