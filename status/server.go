package status

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/metrics"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// Options are what a Server serves.
type Options struct {
	// DegradedAfter is how many failed polls in a row make an input
	// degrade the health (DefaultDegradedAfter when 0).
	DegradedAfter int
	// AdminTokenFile, when set, names a file whose content (a secret) a
	// person gives once at /login to resend and delete quarantined
	// messages; without it the page is read-only.
	AdminTokenFile string
	// Metrics, when set, is served at /metrics (Prometheus).
	Metrics http.Handler
	// Auth reads the OAuth connectors' tokens for the health.
	Auth func() []metrics.AuthStatus
	// Migration, when set, is shown at /migration.
	Migration Migration
	Log       *slog.Logger
}

// Server serves the health, the status page and its actions.
type Server struct {
	t      *Tracker
	opts   Options
	engine atomic.Pointer[engine.Engine]
	pages  *template.Template
	secret [32]byte // keys the admin cookie and the CSRF tokens; new at each start
	token  []byte   // the admin token, or nil: read-only
}

// NewServer makes the server of t's status. It answers /readyz with 503
// until SetEngine gives it the running engine.
func NewServer(t *Tracker, opts Options) (*Server, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{t: t, opts: opts}
	if _, err := rand.Read(s.secret[:]); err != nil {
		return nil, err
	}
	if opts.AdminTokenFile != "" {
		b, err := os.ReadFile(opts.AdminTokenFile)
		if err != nil {
			return nil, err
		}
		if s.token = []byte(strings.TrimSpace(string(b))); len(s.token) < 16 {
			return nil, errors.New("the admin token must be 16 characters or more")
		}
	}
	pages, err := template.New("").Funcs(funcs).ParseFS(templateFiles, "templates/*.html")
	if err != nil {
		return nil, err
	}
	s.pages = pages
	return s, nil
}

// SetEngine gives the server the running engine: from then on it is ready.
func (s *Server) SetEngine(e *engine.Engine) { s.engine.Store(e) }

// Handler is the server's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	if s.opts.Metrics != nil {
		mux.Handle("GET /metrics", s.opts.Metrics)
	}
	static, _ := fs.Sub(staticFiles, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		if s.engine.Load() == nil && s.opts.Migration != nil {
			http.Redirect(w, r, "/migration", http.StatusSeeOther)
			return
		}
		s.ready(s.overview)(w, r)
	})
	mux.HandleFunc("GET /quarantine", s.ready(s.quarantineList))
	mux.HandleFunc("GET /quarantine/{id}", s.ready(s.quarantineEntry))
	mux.HandleFunc("GET /quarantine/{id}/raw", s.ready(s.quarantineRaw))
	mux.HandleFunc("GET /quarantine/{id}/{action}", s.ready(s.admin(s.confirm)))
	mux.HandleFunc("POST /quarantine/{id}/{action}", s.ready(s.admin(s.act)))
	mux.HandleFunc("GET /migration", s.migration)
	mux.HandleFunc("GET /login", s.loginForm)
	mux.HandleFunc("POST /login", s.login)
	return secureHeaders(mux)
}

// Serve listens on addr and serves until ctx ends, over TLS with the
// certificate and key files when given. It returns once listening, so that
// an address in use is an error at start-up.
func (s *Server) Serve(ctx context.Context, addr, certFile, keyFile string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			ln.Close()
			return nil, err
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	go srv.Serve(ln)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	return ln.Addr(), nil
}

// secureHeaders: no script runs on these pages (there is none: the page
// is HTML and CSS), nothing is framed, types are not sniffed.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	e := s.engine.Load()
	if e == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "starting"})
		return
	}
	h := s.health(e)
	code := http.StatusOK
	if h.Status != "ok" && r.URL.Query().Get("strict") == "1" {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, h)
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.engine.Load() == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "starting"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) health(e *engine.Engine) Health {
	var auth []metrics.AuthStatus
	if s.opts.Auth != nil {
		auth = s.opts.Auth()
	}
	return s.t.Health(e, s.opts.DegradedAfter, auth)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// ready serves h once the engine is running; before, 503.
func (s *Server) ready(h func(http.ResponseWriter, *http.Request, *engine.Engine)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		e := s.engine.Load()
		if e == nil {
			http.Error(w, "mailflow is starting", http.StatusServiceUnavailable)
			return
		}
		h(w, r, e)
	}
}

// The admin. A person gives the admin token once at /login; the cookie
// then holds a keyed digest of it (not the token), valid for this run of
// mailflow. Every change is a POST that carries a CSRF token tied to that
// cookie, from a page of this origin.

const cookieName = "mailflow_admin"

func (s *Server) mac(parts ...string) string {
	m := hmac.New(sha256.New, s.secret[:])
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return hex.EncodeToString(m.Sum(nil))
}

// isAdmin reports whether the request carries the admin cookie.
func (s *Server) isAdmin(r *http.Request) bool {
	if s.token == nil {
		return false
	}
	c, err := r.Cookie(cookieName)
	return err == nil && hmac.Equal([]byte(c.Value), []byte(s.mac("admin", string(s.token))))
}

// csrf is the token a form of this session posts back.
func (s *Server) csrf(r *http.Request) string {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return ""
	}
	return s.mac("csrf", c.Value)
}

// sameOrigin reports whether a POST comes from a page of this server: its
// Origin (or, without one, its Referer) names this host.
func sameOrigin(r *http.Request) bool {
	from := r.Header.Get("Origin")
	if from == "" {
		from = r.Header.Get("Referer")
	}
	if from == "" {
		return true // not a browser: the CSRF token still has to match
	}
	u, err := url.Parse(from)
	return err == nil && u.Host == r.Host
}

// admin lets only the admin through; a POST also needs its CSRF token
// and to come from this origin.
func (s *Server) admin(h func(http.ResponseWriter, *http.Request, *engine.Engine)) func(http.ResponseWriter, *http.Request, *engine.Engine) {
	return func(w http.ResponseWriter, r *http.Request, e *engine.Engine) {
		if !s.isAdmin(r) {
			http.Error(w, "forbidden: read-only (log in with the admin token at /login)", http.StatusForbidden)
			return
		}
		if r.Method == http.MethodPost {
			if !sameOrigin(r) || subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.csrf(r))) != 1 {
				http.Error(w, "forbidden: the form did not come from this page", http.StatusForbidden)
				return
			}
		}
		h(w, r, e)
	}
}

func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, "login.html", page{Title: "Log in", ReadOnly: s.token == nil})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if s.token == nil || !sameOrigin(r) {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(r.PostFormValue("token"))), s.token) != 1 {
		s.opts.Log.Warn("status page: a login with a wrong admin token", "from", r.RemoteAddr)
		w.WriteHeader(http.StatusForbidden)
		s.render(w, r, "login.html", page{Title: "Log in", Flash: "That is not the admin token."})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: s.mac("admin", string(s.token)), Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	s.opts.Log.Info("status page: admin logged in", "from", r.RemoteAddr)
	http.Redirect(w, r, "/quarantine", http.StatusSeeOther)
}

// ServeMigration serves a migration's page (and nothing of a running
// engine) on addr, which must be a loopback address: the command line has
// no TLS or admin token to guard more.
func ServeMigration(ctx context.Context, addr string, m Migration, log *slog.Logger) error {
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--http %q: give a loopback address such as 127.0.0.1:8025 (reach it from elsewhere through an SSH tunnel)", addr)
	}
	s, err := NewServer(NewTracker(), Options{Migration: m, Log: log})
	if err != nil {
		return err
	}
	at, err := s.Serve(ctx, addr, "", "")
	if err == nil {
		log.Info("serving the migration's progress", "url", "http://"+at.String()+"/migration")
	}
	return err
}
