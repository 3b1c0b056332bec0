package status

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/internal/human"
)

// page is what every template is given.
type page struct {
	Title     string
	Refresh   int  // seconds between reloads of a page without forms (0: none)
	Admin     bool // the admin is logged in: the actions are shown
	ReadOnly  bool // there is no admin token: no actions at all
	CSRF      string
	Flash     string
	Migration bool // a migration is shown at /migration
	Health    Health
	Data      any
}

var funcs = template.FuncMap{
	"bytes": human.Bytes,
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.Local().Format("2006-01-02 15:04:05")
	},
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		d := time.Since(t)
		switch {
		case d < -time.Second:
			return "in " + (-d).Round(time.Second).String()
		case d < time.Second:
			return "now"
		}
		return d.Round(time.Second).String() + " ago"
	},
	"clip": human.Clip,
	"messages": func(n int) string {
		if n == 1 {
			return "1 message"
		}
		return fmt.Sprintf("%d messages", n)
	},
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, name string, p page) {
	p.Admin, p.ReadOnly, p.Migration = s.isAdmin(r), p.ReadOnly || s.token == nil, s.opts.Migration != nil
	if p.Admin {
		p.CSRF = s.csrf(r)
	}
	var b bytes.Buffer
	if err := s.pages.ExecuteTemplate(&b, name, p); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(b.Bytes())
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request, e *engine.Engine) {
	s.render(w, r, "overview.html", page{Title: "mailflow", Refresh: 5, Health: s.health(e)})
}

// words says an error as a person reads it: one line, without the chain
// of Go wrappers' prefixes where the server's own words say it.
func words(err string) string {
	if err == "" {
		return ""
	}
	return human.Line(strings.TrimSpace(err))
}

func init() { funcs["words"] = words }

// describe says what to do about a failing input or output, where the
// error says enough to know.
func describe(err string) string {
	e := strings.ToLower(err)
	switch {
	case strings.Contains(e, "connection refused"):
		return "the server does not answer on that address and port: is it running, is the address right?"
	case strings.Contains(e, "authenticationfailed"), strings.Contains(e, "authentication failed"), strings.Contains(e, "invalid credentials"), strings.Contains(e, "-err [auth]"), strings.Contains(e, "535"):
		return "the server refused the login: check the user name and password (or run mailflow auth login)"
	case strings.Contains(e, "certificate"), strings.Contains(e, "x509"):
		return "the server's TLS certificate was not trusted: set tls_ca_file (a private CA) or tls_server_name"
	case strings.Contains(e, "starttls"):
		return "the server offered no STARTTLS, so no password or mail was sent in clear"
	case strings.Contains(e, "timeout"), strings.Contains(e, "deadline"):
		return "the server did not answer in time"
	case strings.Contains(e, "no such host"):
		return "the server's name does not resolve: check the address"
	}
	return ""
}

func init() { funcs["advice"] = describe }

// Migration is a migration the page shows: a single mailbox's folders,
// a batch's or a fleet's mailboxes.
type Migration interface {
	// View is how the migration stands now.
	View() MigrationView
}

// MigrationView is a migration as the page shows it.
type MigrationView struct {
	Title   string
	Summary string // a line: how far it is, the rate, the ETA
	Columns []string
	Rows    [][]string
}

func (s *Server) migration(w http.ResponseWriter, r *http.Request) {
	if s.opts.Migration == nil {
		http.NotFound(w, r)
		return
	}
	s.render(w, r, "migration.html", page{Title: "Migration", Refresh: 2, Data: s.opts.Migration.View()})
}

// ProgressLine is "12/40 messages, 3.1 MB of 9.0 MB, 5.2 msg/s, ETA 6s".
func ProgressLine(done, total, doneBytes, totalBytes int64, rate float64, eta time.Duration) string {
	line := fmt.Sprintf("%d/%d messages, %s of %s, %.1f msg/s", done, total, human.Bytes(doneBytes), human.Bytes(totalBytes), rate)
	if eta > 0 {
		line += ", ETA " + eta.Round(time.Second).String()
	}
	return line
}
