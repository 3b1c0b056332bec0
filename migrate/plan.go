// Package migrate moves a mailbox to another server, resumably, and says
// what it did: a typed Plan in, a typed Report out, progress on the way
// (an Observer). It builds the engine's config from the plan as values,
// runs the engine in this process, checks the result folder by folder
// (Verify), and can then empty the source. The command line (mailflow
// migrate), a batch of mailboxes (migrate/batch) and a fleet of workers
// (migrate/fleet) all run the same Plan and read the same Report.
package migrate

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Plan is one migration: where from, where to, what, and how. It is plain
// data (JSON), so that a batch can hand it to a child process, a fleet to
// a worker, and a run can keep it in its state directory.
type Plan struct {
	// From and To are the source and the destination, as URLs (URLHelp):
	// pop3://, pop3s://, imap://, imaps:// or mbox:///FILE for From;
	// smtp://, smtps://, imap://, imaps:// or gmail://ADDRESS for To.
	// ?tls=none|starttls|implicit overrides the scheme's TLS; mbox and
	// gmail URLs take options of their own (mbox.go, gmail.go). A user
	// name is given in the URL; a password never.
	From Endpoint `json:"from"`
	To   Endpoint `json:"to"`
	// Rcpt is the envelope recipient at an SMTP destination.
	Rcpt string `json:"rcpt,omitempty"`

	// Config, when set, is a mailflow.toml whose inputs are polled once
	// instead (From, To and the options for them are then unused).
	Config string `json:"config,omitempty"`

	// StateDir keeps the record of what was moved, for resuming (default:
	// DefaultStateDir).
	StateDir string `json:"state_dir,omitempty"`

	// Keep leaves the messages of a POP3 source there (default: each is
	// deleted once the destination accepted it).
	Keep bool `json:"keep,omitempty"`
	// DeleteSource empties an IMAP source of what was moved, once the
	// verification found nothing missing.
	DeleteSource bool `json:"delete_source,omitempty"`
	// SyncDeletes deletes at an IMAP destination what was moved by an
	// earlier run and deleted at the source since (mbsync's Expunge, or
	// imapsync's --delete2). Like DeleteSource it is asked for on each
	// run, never taken from the saved plan.
	SyncDeletes bool `json:"sync_deletes,omitempty"`
	// Since moves only messages dated on or after it; older ones stay.
	Since time.Time `json:"since,omitzero"`
	// Folders are the IMAP source's folders to move, as LIST patterns
	// (default: every one).
	Folders []string `json:"folders,omitempty"`
	// FolderMap renames folders at an IMAP destination: "Sent" to "Sent
	// Items", "Archive/*" to "Old/*" for a folder and all below it.
	FolderMap map[string]string `json:"folder_map,omitempty"`
	// Parallel is how many folders are fetched, and messages stored, at
	// once (IMAP).
	Parallel int `json:"parallel,omitempty"`
	// Rate bounds what an SMTP or IMAP destination is sent: "10/s",
	// "100/m" messages.
	Rate string `json:"rate,omitempty"`
	// MaxBytesPerSecond paces uploads into an IMAP destination.
	MaxBytesPerSecond int64 `json:"max_bytes_per_second,omitempty"`
	// MaxBytesPerDay bounds what is read from an IMAP source, and stored
	// at an IMAP destination, in a day (Gmail's daily limits).
	MaxBytesPerDay int64 `json:"max_bytes_per_day,omitempty"`
	// GmailSource says how a Gmail source is read (gmailsource.go).
	GmailSource
	// MaxMessageSize leaves larger messages at the source (0: no limit).
	MaxMessageSize int64 `json:"max_message_size,omitempty"`
	// AddMessageID gives a message without a Message-ID one on its way
	// into IMAP (from its Date, From, Subject and size).
	AddMessageID bool `json:"add_message_id,omitempty"`
	// CAFile is a PEM file of the CA that signed both servers'
	// certificates (private CAs).
	CAFile string `json:"ca_file,omitempty"`
	// AllowPlaintextAuth allows passwords over a connection without TLS
	// (?tls=none).
	AllowPlaintextAuth bool `json:"allow_plaintext_auth,omitempty"`
}

// Endpoint is one side of a migration.
type Endpoint struct {
	URL string `json:"url"`
	// The password, by the name of an environment variable or a file,
	// never inline. A source without either reads MAILFLOW_PASSWORD.
	PasswordEnv  string `json:"password_env,omitempty"`
	PasswordFile string `json:"password_file,omitempty"`
}

// endpoint is an Endpoint's URL read: what a connector is configured with.
type endpoint struct {
	scheme string // pop3, imap, smtp, mbox, gmail: the connector type
	addr   string // host:port
	host   string
	tls    string // none, starttls or implicit
	user   string
	// path is an mbox's file, account a Gmail mailbox's address, and opts
	// the options their URLs' queries give.
	path, account string
	opts          url.Values
}

// schemes maps each URL scheme to its connector, TLS mode and default port.
var schemes = map[string]struct{ typ, tls, port string }{
	"pop3": {"pop3", "starttls", "110"}, "pop3s": {"pop3", "implicit", "995"},
	"imap": {"imap", "starttls", "143"}, "imaps": {"imap", "implicit", "993"},
	"smtp": {"smtp", "starttls", "587"}, "smtps": {"smtp", "implicit", "465"},
	"mbox": {typ: "mbox"}, "gmail": {typ: "gmail"},
}

// URLHelp says what --from and --to take, for the command line's help: it
// is kept here, beside the code that reads the URLs.
const URLHelp = `URLs: pop3:// uses STLS, pop3s:// implicit TLS (port 995); imap:// STARTTLS,
imaps:// implicit TLS (993); smtp:// STARTTLS (port 587), smtps:// implicit
TLS (465). Add ?tls=none only for a server you reach in clear on purpose
(with --allow-plaintext-auth to send a password that way). A user in the
--to URL logs in with AUTH.

mbox:///path/file.mbox (or mbox:relative/file.mbox) reads an mbox file,
never changing it: a Google Takeout, a Thunderbird or mutt export. Options:
?labels=first|copies|keywords|none (what Takeout's X-Gmail-Labels become at
an IMAP destination; see the mbox connector's sample.conf),
&include_spam_trash=true, &folder=NAME (of messages without labels),
&variant=mboxo|mboxrd|mboxcl2 (default: told from the file).

gmail://ADDRESS imports into Gmail through the Gmail API, each message
under the label of its folder (INBOX in the inbox, Sent as sent mail; a
Takeout's messages with all their labels), unread as it was. It needs
?client_id=ID of your Google Cloud app (and &client_secret_file=FILE if it
has a secret), and a login once: the run says how (mailflow auth login).
&archive=true keeps everything out of the inbox and read; &label=NAME
(repeatable) labels every message.`

// parse reads the URL; allowed are the connector types this side may be.
func (ep Endpoint) parse(side string, allowed ...string) (endpoint, error) {
	u, err := url.Parse(ep.URL)
	if err != nil {
		return endpoint{}, fmt.Errorf("%s: %v", side, err)
	}
	k, ok := schemes[u.Scheme]
	if !ok || !slices.Contains(allowed, k.typ) {
		var names []string
		for s, k := range schemes {
			if slices.Contains(allowed, k.typ) {
				names = append(names, s+"://")
			}
		}
		slices.Sort(names)
		return endpoint{}, fmt.Errorf("%s %q: the scheme must be one of %s", side, u.Redacted(), strings.Join(names, ", "))
	}
	switch k.typ {
	case "mbox":
		return parseMbox(side, u)
	case "gmail":
		return parseGmail(side, u)
	}
	if u.Hostname() == "" {
		return endpoint{}, fmt.Errorf("%s %q has no host", side, u.Redacted())
	}
	if _, set := u.User.Password(); set {
		return endpoint{}, fmt.Errorf("%s: put no password in the URL (it would show in ps and shell history); give it by environment variable or file", side)
	}
	port := u.Port()
	if port == "" {
		port = k.port
	}
	tls := k.tls
	if t := u.Query().Get("tls"); t != "" {
		if t != "none" && t != "starttls" && t != "implicit" {
			return endpoint{}, fmt.Errorf("%s: ?tls=%s: must be none, starttls or implicit", side, t)
		}
		tls = t
	}
	return endpoint{scheme: k.typ, addr: u.Hostname() + ":" + port, host: u.Hostname(), tls: tls, user: u.User.Username()}, nil
}

// Redacted is the URL as it may be shown: no password (there should be
// none) and no query.
func (ep Endpoint) Redacted() string {
	u, err := url.Parse(ep.URL)
	if err != nil {
		return "(not a URL)"
	}
	c := *u
	c.User = url.User(u.User.Username())
	return c.String()
}

// key names what the endpoint moves mail from or to, for the state
// directory's name and for telling whether a saved plan is this one's: the
// URL as shown, but for an mbox its file and for Gmail its account,
// without their options, so that a run again with an option changed (a
// label, another client_id) goes on from the same record rather than
// importing everything into Gmail a second time.
func (ep Endpoint) key() string {
	u, err := url.Parse(ep.URL)
	if err == nil {
		switch u.Scheme {
		case "mbox":
			if path, err := mboxPath("", u); err == nil {
				return "mbox://" + path
			}
		case "gmail":
			if account, err := gmailAccount("", u); err == nil {
				return "gmail://" + strings.ToLower(account)
			}
		}
	}
	return ep.Redacted()
}

// ErrPlan marks a plan that cannot run as written: running it again
// unchanged cannot help.
var ErrPlan = errors.New("plan")

func planErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrPlan}, args...)...)
}

// check validates the plan and reads its endpoints.
func (p *Plan) check() (from, to endpoint, err error) {
	if p.Config != "" {
		if p.DeleteSource {
			return from, to, planErrorf("--delete-source: with -c FILE, set on_settled = \"delete\" in the file instead")
		}
		return from, to, nil
	}
	if p.From.URL == "" || p.To.URL == "" {
		return from, to, planErrorf("--from and --to are needed (or -c FILE)")
	}
	if from, err = p.From.parse("--from", "pop3", "imap", "mbox"); err != nil {
		return from, to, planErrorf("%v", err)
	}
	if to, err = p.To.parse("--to", "smtp", "imap", "gmail"); err != nil {
		return from, to, planErrorf("%v", err)
	}
	if from.scheme == "mbox" {
		// Kept absolute in the saved plan, so that a run again (or
		// "mailflow quarantine -c STATE") from another directory reads
		// the same file.
		p.From.URL = from.url()
	}
	switch {
	case from.user == "" && from.scheme != "mbox":
		return from, to, planErrorf("--from needs the user name: %s://USER@HOST", from.scheme)
	case to.scheme == "smtp" && (strings.ContainsAny(p.Rcpt, " <>\r\n") || !strings.Contains(p.Rcpt, "@")):
		return from, to, planErrorf("--rcpt %q is not an address (an SMTP destination needs one)", p.Rcpt)
	case to.scheme == "imap" && to.user == "":
		return from, to, planErrorf("--to needs the user name: %s://USER@HOST", to.scheme)
	case to.user != "" && p.To.PasswordEnv == "" && p.To.PasswordFile == "":
		return from, to, planErrorf("--to names a user: give its password with --to-password-env or --to-password-file")
	case to.scheme != "imap" && (p.AddMessageID || p.MaxBytesPerSecond > 0):
		return from, to, planErrorf("--add-message-id and --max-bytes-per-second are for an IMAP destination")
	case p.Rate != "" && to.scheme == "gmail":
		return from, to, planErrorf("--rate is for an SMTP or IMAP destination; into Gmail the import waits as Google asks")
	case p.SyncDeletes && to.scheme != "imap":
		return from, to, planErrorf("--sync-deletes is for an IMAP destination")
	case p.DeleteSource && p.SyncDeletes:
		return from, to, planErrorf("--delete-source and --sync-deletes together would empty both sides: give one")
	case p.DeleteSource && from.scheme != "imap":
		return from, to, planErrorf("--delete-source is for an IMAP source; a POP3 source is emptied as it goes unless --keep, an mbox is never changed")
	case to.scheme == "gmail" && len(p.FolderMap) > 0:
		return from, to, planErrorf("--folder-map is for an IMAP destination; into Gmail each folder is a label of its name")
	}
	if err := p.checkGmail(from, to); err != nil {
		return from, to, planErrorf("%v", err)
	}
	if err := checkLabels(from, to); err != nil {
		return from, to, planErrorf("%v", err)
	}
	if to.scheme == "gmail" && to.opts.Get("client_id") == "" {
		return from, to, planErrorf(`--to %s: give the client id of your Google Cloud app: gmail://%s?client_id=ID (README, "Replacing Gmail's 'check mail from other accounts'", says how to make one)`, p.To.Redacted(), to.account)
	}
	return from, to, nil
}

// DefaultStateDir is where a plan without StateDir keeps its record:
// under $XDG_STATE_HOME/mailflow/migrate, named after the source's host
// and a digest of From, To and Rcpt, so that the same command run again
// finds its record.
func (p *Plan) DefaultStateDir() (string, error) {
	from, _ := p.From.parse("--from", "pop3", "imap", "mbox")
	id := sha256.Sum256([]byte(p.From.key() + "\x00" + p.To.key() + "\x00" + p.Rcpt))
	return filepath.Join(StateHome(), "mailflow", "migrate", fmt.Sprintf("%s-%x", from.host, id[:6])), nil
}

// StateHome is $XDG_STATE_HOME, or ~/.local/state.
func StateHome() string {
	if base := os.Getenv("XDG_STATE_HOME"); base != "" {
		return base
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "state")
}

// stateDir is the plan's state directory, made absolute and created.
func (p *Plan) stateDir() (string, error) {
	dir := p.StateDir
	if dir == "" {
		var err error
		if dir, err = p.DefaultStateDir(); err != nil {
			return "", err
		}
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	return dir, os.MkdirAll(dir, 0o700)
}

// Hosts are the servers the plan talks to (for a batch's per-host limit).
func (p *Plan) Hosts() []string {
	var hosts []string
	for _, ep := range []Endpoint{p.From, p.To} {
		if u, err := url.Parse(ep.URL); err == nil && u.Hostname() != "" {
			hosts = append(hosts, u.Hostname())
		}
	}
	return hosts
}

// Key names the plan for a batch or fleet: the same plan has the same key.
func (p *Plan) Key() string {
	b, _ := json.Marshal(p)
	sum := sha256.Sum256(b)
	return fmt.Sprintf("%x", sum[:8])
}

// absPath makes a path given on the command line absolute, since a
// child process or a later run may start elsewhere.
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// ParseSince reads a --since date: 2006-01-02 (midnight UTC), or RFC 3339.
func ParseSince(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02", time.RFC3339} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--since %q: give a date like 2024-01-31 (or RFC 3339)", s)
}

// ParseFolderMap reads a --folder-map: FROM=TO pairs, comma-separated
// ("Sent=Sent Items,Archive/*=Old/*").
func ParseFolderMap(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	m := map[string]string{}
	for _, pair := range strings.Split(s, ",") {
		from, to, ok := strings.Cut(pair, "=")
		if !ok {
			return nil, fmt.Errorf("--folder-map %q: give FROM=TO pairs, comma-separated", s)
		}
		m[strings.TrimSpace(from)] = strings.TrimSpace(to)
	}
	return m, nil
}

// ParseList reads a comma-separated list (--folders), dropping blanks.
func ParseList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// SetText fills in what a command line gives as text: -c FILE, --since,
// --folders ("*" is every folder) and --folder-map.
func (p *Plan) SetText(config, since, folders, folderMap string) (err error) {
	p.Config = config
	if since != "" {
		if p.Since, err = ParseSince(since); err != nil {
			return err
		}
	}
	if folders != "*" {
		p.Folders = ParseList(folders)
	}
	p.FolderMap, err = ParseFolderMap(folderMap)
	return err
}
