package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/mailflow/mailflow/engine/config"

	"github.com/mailflow/mailflow/connectors/oauth"
	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/metrics"
	"github.com/mailflow/mailflow/plugins"
)

const authHelp = `Usage: mailflow auth login -c FILE NAME [--device]
       mailflow auth status -c FILE
       mailflow auth logout -c FILE NAME

For the inputs and outputs of FILE with auth = "oauth2" (Gmail, Microsoft 365,
any OAuth 2.0 provider; see README, "Gmail and Microsoft 365").

login logs the connector NAME in once: it prints an address to open in a
browser, and waits on 127.0.0.1 for the provider to send the browser back
(authorization code with PKCE). With --device, for a machine without a
browser, it prints a code to enter on any other device instead. The tokens
are kept in STATE_DIR/tokens/NAME.json (mode 0600); mailflow refreshes them
by itself from then on. Run it again when a refresh token was revoked or
lapsed: mailflow says so in its log, in /healthz and in "auth status".

status shows, for each such connector: the account, the scopes, when the
access token expires, how old the refresh token is, the last refresh and the
last error.

logout deletes the connector's tokens.
`

func cmdAuth(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
		fmt.Fprint(stdout, authHelp)
		return exitOK
	}
	if len(args) == 0 || (args[0] != "login" && args[0] != "status" && args[0] != "logout") {
		fmt.Fprint(stderr, authHelp)
		return exitConfig
	}
	verb := args[0]
	var c common
	var device bool
	fs := newFlags("auth "+verb, authHelp, stderr, &c)
	if verb == "login" {
		fs.BoolVar(&device, "device", false, "use the device flow: print a code to enter on another device")
	}
	if code, stop := parseFlags(fs, args[1:], stdout); stop {
		return code
	}
	cfg, log, code := c.load(stderr)
	if cfg == nil {
		return code
	}
	s, err := engine.Build(cfg, plugins.Default, log, nil)
	if err != nil {
		fmt.Fprintln(stderr, "mailflow:", err)
		return exitConfig
	}
	defer s.Close()
	users := oauthUsers(cfg)
	store := oauth.NewStore(cfg.StateDir)
	if verb == "status" {
		authStatus(stdout, store, users)
		return exitOK
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "mailflow auth %s: name one input or output of %s\n", verb, c.config)
		return exitConfig
	}
	name := fs.Arg(0)
	oc := users[name]
	if oc == nil {
		fmt.Fprintf(stderr, "mailflow auth %s: %s has no input or output %q with auth = \"oauth2\"\n", verb, c.config, name)
		return exitConfig
	}
	if verb == "logout" {
		if err := store.Delete(name); err != nil {
			fmt.Fprintln(stderr, "mailflow:", err)
			return exitFailed
		}
		fmt.Fprintf(stdout, "%s: logged out (its tokens are deleted)\n", name)
		return exitOK
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	var tok *oauth.Token
	if device {
		tok, err = oauth.LoginDevice(ctx, oc, stdout)
	} else {
		tok, err = oauth.LoginCode(ctx, oc, stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "mailflow auth login:", err)
		return exitFailed
	}
	tok.Account = oc.Account
	if err := store.Save(name, tok); err != nil {
		fmt.Fprintln(stderr, "mailflow auth login:", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "%s: logged in as %s; the access token expires %s, and is refreshed by itself\n",
		name, tok.Account, tok.Expiry.Local().Format(time.DateTime))
	return exitOK
}

// oauthUsers are the connectors of cfg that log in with OAuth, by name.
func oauthUsers(cfg *config.Config) map[string]*oauth.Config {
	out := map[string]*oauth.Config{}
	add := func(name string, p any) {
		if u, ok := p.(oauth.User); ok && u.OAuth() != nil {
			out[name] = u.OAuth()
		}
	}
	for _, ic := range cfg.Inputs {
		add(ic.Name, ic.Plugin)
	}
	for _, oc := range cfg.Outputs {
		add(oc.Name, oc.Plugin)
	}
	return out
}

func authStatus(w io.Writer, store oauth.Store, users map[string]*oauth.Config) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tACCOUNT\tSCOPES\tACCESS TOKEN\tREFRESH TOKEN AGE\tLAST REFRESH\tLAST ERROR")
	names := make([]string, 0, len(users))
	for n := range users {
		names = append(names, n)
	}
	sort.Strings(names)
	now := time.Now()
	for _, n := range names {
		t, err := store.Load(n)
		switch {
		case errors.Is(err, oauth.ErrNoToken):
			fmt.Fprintf(tw, "%s\t%s\t\tnot logged in (mailflow auth login)\t\t\t\n", n, users[n].Account)
			continue
		case err != nil:
			fmt.Fprintf(tw, "%s\t%s\t\t\t\t\t%s\n", n, users[n].Account, oneLine(err.Error()))
			continue
		}
		expiry := "expired " + now.Sub(t.Expiry).Round(time.Second).String() + " ago"
		if t.Expiry.After(now) {
			expiry = "expires in " + t.Expiry.Sub(now).Round(time.Second).String()
		}
		last := "-"
		if !t.LastRefresh.IsZero() {
			last = t.LastRefresh.Local().Format(time.DateTime)
		}
		scopes, lastErr := strings.Join(t.Scopes, " "), oneLine(t.LastError)
		if lastErr == "" {
			lastErr = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n, t.Account, scopes, expiry,
			now.Sub(t.RefreshIssued).Round(time.Minute), last, lastErr)
	}
	tw.Flush()
}

// authStatuses reads the tokens of cfg's OAuth connectors, for metrics and
// /healthz. A connector that has not asked for a token yet is read from
// its token file.
func authStatuses(cfg *config.Config) []metrics.AuthStatus {
	var out []metrics.AuthStatus
	store := oauth.NewStore(cfg.StateDir)
	add := func(name string, p any) {
		u, ok := p.(oauth.User)
		if !ok || u.Tokens() == nil {
			return
		}
		a := metrics.AuthStatus{Connector: name, Failures: u.Tokens().Failures()}
		t := u.Tokens().Status()
		if t == nil {
			var err error
			if t, err = store.Load(name); err != nil {
				a.Error = err.Error()
			}
		}
		if t != nil {
			a.Expiry = t.Expiry
			if a.Error == "" {
				a.Error = t.LastError
			}
		}
		out = append(out, a)
	}
	for _, ic := range cfg.Inputs {
		add(ic.Name, ic.Plugin)
	}
	for _, oc := range cfg.Outputs {
		add(oc.Name, oc.Plugin)
	}
	return out
}
