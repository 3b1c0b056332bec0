// Package gmailtest is a fake of the parts of the Gmail API that mailflow's
// gmail output uses, on 127.0.0.1, for tests in any package:
// users.messages.import with its three upload protocols (media, multipart,
// resumable), users.labels.list and users.labels.create, and
// users.messages.list with q=rfc822msgid:, every request with its bearer
// token checked.
//
// It is strict on purpose. Its routes, parameters, upload protocols, media
// types and scopes follow Google's discovery document (testdata; see
// discovery_test.go), and a request Google would refuse is refused here
// with Google's error shape: a wrong upload protocol or Content-Type, a
// parameter the method does not have, a label name where a label id
// belongs, a bad bearer token. It is stricter than Google in one place,
// said where it is: an import must say internalDateSource.
//
// Knobs make it behave like a server on a bad day: 429 storms (with or
// without Retry-After), 403 rate limits, 5xx replies, a connection dropped
// after an import was stored but before the reply, or in the middle of an
// upload.
package gmailtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MaxImportSize is the largest message the fake imports unless told
// otherwise: Gmail's reference for users.messages.import says 150 MB.
const MaxImportSize = 150 << 20

// The scopes of the methods the fake serves (from the discovery document).
const (
	ScopeFull     = "https://mail.google.com/"
	ScopeInsert   = "https://www.googleapis.com/auth/gmail.insert"
	ScopeLabels   = "https://www.googleapis.com/auth/gmail.labels"
	ScopeMetadata = "https://www.googleapis.com/auth/gmail.metadata"
	ScopeModify   = "https://www.googleapis.com/auth/gmail.modify"
	ScopeReadonly = "https://www.googleapis.com/auth/gmail.readonly"
)

// Options configure a fake.
type Options struct {
	// User is the mailbox's address: the userId "me" and this address name
	// it; any other userId is refused as Google refuses another user's
	// mailbox. Default "me@example.com".
	User string
	// Valid says whether a bearer token is good (oauthtest.Server.Valid,
	// for tokens that expire and are refreshed). Nil: only Tokens are.
	Valid func(token string) bool
	// Tokens are accepted when Valid is nil.
	Tokens []string
	// Scopes are what every token was granted; a method none of whose
	// scopes is among them is refused (403 insufficientPermissions). Nil:
	// every scope.
	Scopes []string
	// MaxSize is the largest message imported (413 above it); 0:
	// MaxImportSize.
	MaxSize int64
	// OnImport, if set, is called after each import is stored (before the
	// reply), with the number of messages the mailbox holds: a test starts
	// a storm mid-way from it.
	OnImport func(n int)
}

// Message is a message the fake holds.
type Message struct {
	ID, ThreadID string
	LabelIDs     []string
	// InternalDate is Gmail's date for the message: its Date header with
	// internalDateSource=dateHeader (when valid), else the time of import.
	InternalDate time.Time
	Raw          []byte
	// MessageID is its Message-ID header without the angle brackets.
	MessageID string
	// Upload is the protocol it came by: "media", "multipart" or
	// "resumable".
	Upload                                     string
	NeverMarkSpam, ProcessForCalendar, Deleted bool
}

// Label is a label the mailbox has.
type Label struct {
	ID                    string `json:"id"`
	Name                  string `json:"name"`
	Type                  string `json:"type"`
	MessageListVisibility string `json:"messageListVisibility,omitempty"`
	LabelListVisibility   string `json:"labelListVisibility,omitempty"`
}

// Request is a request the fake answered, for tests to count.
type Request struct {
	Op     string // "messages.import", "labels.list", "labels.create", "messages.list", "upload" (a resumable session's PUT)
	Method string
	Path   string
	Query  url.Values
	Status int // 0: the connection was dropped
}

// Server is a running fake.
type Server struct {
	// URL is its base address, http://127.0.0.1:PORT: the gmail output's
	// api_url.
	URL string

	opts Options
	srv  *http.Server

	mu         sync.Mutex
	messages   []*Message
	labels     []Label
	nextID     int
	sessions   map[string]*session
	requests   []Request
	seen       map[string]bool // bearer tokens presented
	refused    map[string]bool // tokens the fake no longer takes
	uploadIDs  []string
	storm      int
	stormRetry time.Duration
	stormUntil time.Time
	rateLimit  int
	rateReason string
	fail       int
	failStatus int
	dropReply  int
	dropUpload []int64
}

type session struct {
	user     string
	params   url.Values
	labelIDs []string
	size     int64 // X-Upload-Content-Length; -1 when not said
	got      []byte
	done     *Message
}

// systemLabels are the labels every mailbox has; their ids are their names.
var systemLabels = []string{"INBOX", "SPAM", "TRASH", "UNREAD", "STARRED", "IMPORTANT", "SENT", "DRAFT",
	"CATEGORY_PERSONAL", "CATEGORY_SOCIAL", "CATEGORY_PROMOTIONS", "CATEGORY_UPDATES", "CATEGORY_FORUMS"}

// New starts a fake on a free port of 127.0.0.1.
func New(opts Options) (*Server, error) {
	if opts.User == "" {
		opts.User = "me@example.com"
	}
	if opts.MaxSize <= 0 {
		opts.MaxSize = MaxImportSize
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{URL: "http://" + ln.Addr().String(), opts: opts, sessions: map[string]*session{},
		seen: map[string]bool{}, refused: map[string]bool{}, nextID: 0x18f3a0000000}
	for _, l := range systemLabels {
		s.labels = append(s.labels, Label{ID: l, Name: l, Type: "system"})
	}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln)
	return s, nil
}

// Close stops the fake.
func (s *Server) Close() error { return s.srv.Close() }

// Storm makes the next n requests (not a resumable session's uploads)
// answer 429 Too Many Requests, with Retry-After: retryAfter in whole
// seconds, rounded up; none when retryAfter is 0.
func (s *Server) Storm(n int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.storm, s.stormRetry = n, retryAfter
}

// StormFor is Storm for every request during d from now.
func (s *Server) StormFor(d, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stormUntil, s.stormRetry = time.Now().Add(d), retryAfter
}

// RateLimit makes the next n requests answer 403 with reason
// ("userRateLimitExceeded", "rateLimitExceeded"), as Gmail does when a
// quota is used up.
func (s *Server) RateLimit(n int, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rateLimit, s.rateReason = n, reason
}

// Fail makes the next n requests answer status (a 5xx) without doing
// anything.
func (s *Server) Fail(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail, s.failStatus = n, status
}

// DropReply makes the next n imports store the message and then close
// the connection without a reply: the client cannot know it arrived.
func (s *Server) DropReply(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropReply = n
}

// DropUpload makes the next n requests that carry a message's bytes
// (a media or multipart import, a resumable session's PUT) close the
// connection after reading after bytes of their body. A resumable session
// keeps what it read, as Google's does; an import keeps nothing.
func (s *Server) DropUpload(n int, after int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.dropUpload = append(s.dropUpload, after)
	}
}

// RefuseTokensSeen makes every bearer token presented so far invalid (a
// revocation at Google's end that the token's expiry does not show).
func (s *Server) RefuseTokensSeen() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t := range s.seen {
		s.refused[t] = true
	}
}

// DeleteLabel removes a user label, as a person can in Gmail's settings,
// and takes it off every message.
func (s *Server) DeleteLabel(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, l := range s.labels {
		if l.Name == name && l.Type == "user" {
			s.labels = slices.Delete(s.labels, i, i+1)
			for _, m := range s.messages {
				m.LabelIDs = slices.DeleteFunc(m.LabelIDs, func(id string) bool { return id == l.ID })
			}
			return true
		}
	}
	return false
}

// Messages is a copy of what the mailbox holds, in the order imported.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.messages))
	for i, m := range s.messages {
		out[i] = *m
		out[i].LabelIDs = slices.Clone(m.LabelIDs)
	}
	return out
}

// Labels is a copy of the mailbox's labels, system ones first.
func (s *Server) Labels() []Label {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.labels)
}

// LabelID is the id of the label named name; "" when there is none.
func (s *Server) LabelID(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.labels {
		if l.Name == name {
			return l.ID
		}
	}
	return ""
}

// Requests is a copy of every request answered (or dropped), in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Count is how many requests of op were answered 2xx.
func (s *Server) Count(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.requests {
		if r.Op == op && r.Status/100 == 2 {
			n++
		}
	}
	return n
}

// TokensSeen are the bearer tokens presented, for a test that checks that
// none was logged.
func (s *Server) TokensSeen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for t := range s.seen {
		out = append(out, t)
	}
	return out
}

// UploadIDs are the resumable sessions' ids (a session URI is a
// capability: whoever has it can upload into the mailbox).
func (s *Server) UploadIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.uploadIDs)
}

// apiError is Google's error reply.
type apiError struct {
	code                            int
	status, reason, message         string
	location, locationType          string
	retryAfter                      time.Duration
	wwwAuthenticate, dropConnection bool
}

func (e *apiError) write(w http.ResponseWriter) {
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.retryAfter+time.Second-1)/time.Second)))
	}
	if e.wwwAuthenticate {
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://accounts.google.com/", error="invalid_token"`)
	}
	item := map[string]string{"message": e.message, "domain": "global", "reason": e.reason}
	if e.location != "" {
		item["location"], item["locationType"] = e.location, e.locationType
	}
	if e.reason == "rateLimitExceeded" || e.reason == "userRateLimitExceeded" {
		item["domain"] = "usageLimits"
	}
	writeJSON(w, e.code, map[string]any{"error": map[string]any{"code": e.code, "message": e.message,
		"errors": []any{item}, "status": e.status}})
}

func badRequest(format string, args ...any) *apiError {
	msg := fmt.Sprintf(format, args...)
	return &apiError{code: 400, status: "INVALID_ARGUMENT", reason: "invalidArgument", message: msg}
}

func badParameter(name, format string, args ...any) *apiError {
	e := badRequest(format, args...)
	e.reason, e.location, e.locationType = "badRequest", name, "parameter"
	return e
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// drop closes the connection without a reply.
func drop(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler) // net/http closes the connection
}

var userPath = regexp.MustCompile(`^/((?:resumable/)?upload/)?gmail/v1/users/([^/]+)/(messages/import|messages|labels)$`)

// route is one method the fake serves, as the discovery document has it.
type route struct {
	op         string // the method's id without "gmail.users."
	httpMethod string
	path       string            // the discovery's path
	params     map[string]string // query parameter → its type ("boolean", "string", "uint32", or "enum:a|b")
	repeated   []string          // parameters that may be given more than once
	uploads    map[string]string // upload protocol → its path
	accept     string            // the media type uploads must have
	scopes     []string          // any one of them lets a token call it
}

// routes are the methods the fake serves; discovery_test.go checks them
// against the discovery document.
var routes = []route{
	{op: "messages.import", httpMethod: "POST", path: "gmail/v1/users/{userId}/messages/import",
		params: map[string]string{"internalDateSource": "enum:receivedTime|dateHeader", "neverMarkSpam": "boolean",
			"processForCalendar": "boolean", "deleted": "boolean"},
		uploads: map[string]string{"simple": "/upload/gmail/v1/users/{userId}/messages/import",
			"resumable": "/resumable/upload/gmail/v1/users/{userId}/messages/import"},
		accept: "message/*",
		scopes: []string{ScopeFull, ScopeInsert, ScopeModify}},
	{op: "labels.list", httpMethod: "GET", path: "gmail/v1/users/{userId}/labels",
		scopes: []string{ScopeFull, ScopeLabels, ScopeMetadata, ScopeModify, ScopeReadonly}},
	{op: "labels.create", httpMethod: "POST", path: "gmail/v1/users/{userId}/labels",
		scopes: []string{ScopeFull, ScopeLabels, ScopeModify}},
	{op: "messages.list", httpMethod: "GET", path: "gmail/v1/users/{userId}/messages",
		params: map[string]string{"includeSpamTrash": "boolean", "labelIds": "string", "maxResults": "uint32",
			"pageToken": "string", "q": "string"},
		repeated: []string{"labelIds"},
		scopes:   []string{ScopeFull, ScopeMetadata, ScopeModify, ScopeReadonly}},
}

// globalParams are the discovery document's parameters of every method
// that the fake takes: a token in the URL (access_token, oauth_token) is
// refused, a JSONP callback or an API key has no place here.
var globalParams = map[string]string{"alt": "enum:json", "prettyPrint": "boolean", "quotaUser": "string", "fields": "string"}

func findRoute(op string) *route {
	for i := range routes {
		if routes[i].op == op {
			return &routes[i]
		}
	}
	return nil
}

// ServeHTTP answers one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query()}
	status, e := s.serve(w, r, &rec)
	if e != nil {
		if e.dropConnection {
			status = 0
		} else {
			e.write(w)
			status = e.code
		}
	}
	rec.Status = status
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	s.mu.Unlock()
	if e != nil && e.dropConnection {
		drop(w)
	}
}

// serve does the request and returns the status it answered with, or the
// error to answer with.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, rec *Request) (int, *apiError) {
	m := userPath.FindStringSubmatch(r.URL.Path)
	if m == nil {
		return 0, &apiError{code: 404, status: "NOT_FOUND", reason: "notFound", message: "Not Found"}
	}
	upload, user, what := m[1], m[2], m[3]
	q := r.URL.Query()
	var rt *route
	switch {
	case what == "messages/import" && upload != "":
		rt = findRoute("messages.import")
		if r.Method == http.MethodPut && q.Has("upload_id") {
			rec.Op = "upload"
		} else {
			rec.Op = rt.op
		}
	case what == "messages/import":
		// The metadata-only form (the message base64url-encoded in "raw")
		// is Google's too, but mailflow does not use it.
		return 0, &apiError{code: 501, status: "UNIMPLEMENTED", reason: "notImplemented",
			message: "gmailtest serves messages.import only on its upload paths"}
	case upload != "":
		return 0, &apiError{code: 404, status: "NOT_FOUND", reason: "notFound", message: "Not Found"}
	case what == "labels" && r.Method == http.MethodGet:
		rt = findRoute("labels.list")
	case what == "labels" && r.Method == http.MethodPost:
		rt = findRoute("labels.create")
	case what == "messages" && r.Method == http.MethodGet:
		rt = findRoute("messages.list")
	default:
		return 0, &apiError{code: 405, status: "METHOD_NOT_ALLOWED", reason: "methodNotAllowed", message: "Method Not Allowed"}
	}
	if rec.Op == "" {
		rec.Op = rt.op
	}
	if rec.Op != "upload" && r.Method != rt.httpMethod {
		return 0, &apiError{code: 405, status: "METHOD_NOT_ALLOWED", reason: "methodNotAllowed", message: "Method Not Allowed"}
	}
	if e := s.authorize(r, rt); e != nil {
		return 0, e
	}
	if !strings.EqualFold(user, "me") && !strings.EqualFold(user, s.opts.User) {
		return 0, &apiError{code: 403, status: "PERMISSION_DENIED", reason: "forbidden", message: "Delegation denied for " + s.opts.User}
	}
	if rec.Op != "upload" {
		if e := s.fault(); e != nil {
			return 0, e
		}
	}
	if rec.Op == "upload" {
		return s.sessionPut(w, r, q.Get("upload_id"))
	}
	if e := checkParams(q, rt, upload != ""); e != nil {
		return 0, e
	}
	if rt.op == "messages.list" && q.Has("q") && s.onlyMetadata() {
		return 0, &apiError{code: 403, status: "PERMISSION_DENIED", reason: "forbidden",
			message: "Metadata scope does not support 'q' parameter"}
	}
	switch rt.op {
	case "messages.import":
		return s.importMessage(w, r, q, upload == "resumable/upload/")
	case "labels.list":
		s.mu.Lock()
		ls := slices.Clone(s.labels)
		s.mu.Unlock()
		writeJSON(w, 200, map[string]any{"labels": ls})
		return 200, nil
	case "labels.create":
		return s.createLabel(w, r)
	default:
		return s.listMessages(w, q)
	}
}

// authorize checks the bearer token and its scopes.
func (s *Server) authorize(r *http.Request, rt *route) *apiError {
	unauth := &apiError{code: 401, status: "UNAUTHENTICATED", reason: "authError", message: "Invalid Credentials",
		location: "Authorization", locationType: "header", wwwAuthenticate: true}
	q := r.URL.Query()
	if q.Has("access_token") || q.Has("oauth_token") || q.Has("key") {
		// Google takes these; the fake refuses them, because a token in
		// a URL ends up in access logs.
		return badParameter("access_token", "gmailtest: a token or key in the URL is refused; send Authorization: Bearer")
	}
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		unauth.message = "Request is missing required authentication credential. Expected OAuth 2 access token."
		return unauth
	}
	s.mu.Lock()
	s.seen[tok] = true
	refused := s.refused[tok]
	s.mu.Unlock()
	valid := slices.Contains(s.opts.Tokens, tok)
	if s.opts.Valid != nil {
		valid = s.opts.Valid(tok)
	}
	if refused || !valid {
		return unauth
	}
	if s.opts.Scopes != nil && !slices.ContainsFunc(rt.scopes, func(sc string) bool { return slices.Contains(s.opts.Scopes, sc) }) {
		return &apiError{code: 403, status: "PERMISSION_DENIED", reason: "insufficientPermissions",
			message: "Request had insufficient authentication scopes."}
	}
	return nil
}

// onlyMetadata reports whether the tokens carry gmail.metadata and no
// scope that lets a search through message text.
func (s *Server) onlyMetadata() bool {
	return s.opts.Scopes != nil && slices.Contains(s.opts.Scopes, ScopeMetadata) &&
		!slices.ContainsFunc([]string{ScopeFull, ScopeModify, ScopeReadonly}, func(sc string) bool { return slices.Contains(s.opts.Scopes, sc) })
}

// fault is the reply a knob asks for, if any.
func (s *Server) fault() *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.storm > 0 || time.Now().Before(s.stormUntil):
		if s.storm > 0 {
			s.storm--
		}
		return &apiError{code: 429, status: "RESOURCE_EXHAUSTED", reason: "rateLimitExceeded",
			message: "Too many concurrent requests for user", retryAfter: s.stormRetry}
	case s.rateLimit > 0:
		s.rateLimit--
		return &apiError{code: 403, status: "PERMISSION_DENIED", reason: s.rateReason,
			message: "User-rate limit exceeded.  Retry after " + time.Now().Add(time.Second).UTC().Format(time.RFC3339)}
	case s.fail > 0:
		s.fail--
		return &apiError{code: s.failStatus, status: "UNAVAILABLE", reason: "backendError", message: "Backend Error"}
	}
	return nil
}

// checkParams refuses a query parameter the method does not have (Google:
// "Cannot bind query parameter"), a value not of its type, and a
// parameter given twice that is not repeated.
func checkParams(q url.Values, rt *route, upload bool) *apiError {
	for name, vals := range q {
		typ, ok := rt.params[name]
		if !ok {
			typ, ok = globalParams[name]
		}
		if name == "uploadType" && upload {
			typ, ok = "enum:media|multipart|resumable", true
		}
		if !ok {
			return badParameter(name, "Invalid JSON payload received. Unknown name %q: Cannot bind query parameter. Field '%s' could not be found in request message.", name, name)
		}
		if len(vals) > 1 && !slices.Contains(rt.repeated, name) {
			return badParameter(name, "Invalid JSON payload received. Repeated values for field %q", name)
		}
		for _, v := range vals {
			if e := checkValue(name, typ, v); e != nil {
				return e
			}
		}
	}
	if rt.op == "messages.import" {
		if upload && q.Get("uploadType") == "" {
			return badParameter("uploadType", "Upload requests must include an uploadType URL parameter and a URL path beginning with /upload/")
		}
		// Google takes an import without internalDateSource (its default
		// for import is dateHeader, but receivedTime for insert): the fake
		// refuses it, so that the output never leans on a default.
		if !q.Has("internalDateSource") {
			return badParameter("internalDateSource", "gmailtest: say internalDateSource; the output must not lean on a default")
		}
	}
	return nil
}

func checkValue(name, typ, v string) *apiError {
	switch {
	case typ == "boolean":
		if v != "true" && v != "false" {
			return badParameter(name, "Invalid value at '%s' (TYPE_BOOL), %q", name, v)
		}
	case typ == "uint32":
		if _, err := strconv.ParseUint(v, 10, 32); err != nil {
			return badParameter(name, "Invalid value at '%s' (TYPE_UINT32), %q", name, v)
		}
	case strings.HasPrefix(typ, "enum:"):
		if !slices.Contains(strings.Split(typ[5:], "|"), v) {
			return badParameter(name, "Invalid value at '%s', %q", name, v)
		}
	}
	return nil
}

// metadata is the Message resource an upload may carry. Fields Google
// would take but the fake has no use for are refused rather than ignored.
type metadata struct {
	LabelIDs []string `json:"labelIds"`
	ThreadID string   `json:"threadId"`
}

// readMetadata decodes a JSON Message resource, as Google does: an
// unknown field is an error.
func readMetadata(r io.Reader, contentType string) (metadata, *apiError) {
	var md metadata
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/json" || params["charset"] != "" && !strings.EqualFold(params["charset"], "utf-8") {
		return md, badRequest("the metadata must be application/json (UTF-8), not %q", contentType)
	}
	dec := json.NewDecoder(io.LimitReader(r, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&md); err != nil {
		return md, badRequest("Invalid JSON payload received. %v", err)
	}
	return md, nil
}

// isMessageType reports whether contentType is one the import accepts
// (message/*).
func isMessageType(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && strings.HasPrefix(mt, "message/")
}

// importMessage answers an import on the upload path: the whole message
// in this request (media, multipart), or a resumable session begun.
func (s *Server) importMessage(w http.ResponseWriter, r *http.Request, q url.Values, resumablePath bool) (int, *apiError) {
	protocol := q.Get("uploadType")
	if resumablePath && protocol != "resumable" {
		return 0, badParameter("uploadType", "the /resumable/upload/ path takes uploadType=resumable only")
	}
	var md metadata
	var raw []byte
	switch protocol {
	case "media":
		if !isMessageType(r.Header.Get("Content-Type")) {
			return 0, badRequest("Media type '%s' is not supported. Valid media types: [message/*]", r.Header.Get("Content-Type"))
		}
		var e *apiError
		if raw, e = s.readBody(r, r.Body, r.ContentLength); e != nil {
			return 0, e
		}
	case "multipart":
		var e *apiError
		if md, raw, e = s.readMultipart(r); e != nil {
			return 0, e
		}
	case "resumable":
		return s.beginSession(w, r, q)
	}
	msg, e := s.store(q, md, raw, protocol)
	if e != nil {
		return 0, e
	}
	if s.takeDropReply() {
		return 0, &apiError{dropConnection: true}
	}
	writeJSON(w, 200, msg.resource())
	return 200, nil
}

// readBody reads a message's bytes: Content-Length must be given, and
// what is over the size limit is refused; a DropUpload knob cuts it short.
func (s *Server) readBody(r *http.Request, body io.Reader, length int64) ([]byte, *apiError) {
	if r.ContentLength < 0 {
		return nil, &apiError{code: 411, status: "INVALID_ARGUMENT", reason: "badRequest", message: "Length Required"}
	}
	if length > s.opts.MaxSize {
		return nil, tooLarge(s.opts.MaxSize)
	}
	if after, ok := s.takeDropUpload(); ok {
		io.CopyN(io.Discard, body, after)
		return nil, &apiError{dropConnection: true}
	}
	raw, err := io.ReadAll(io.LimitReader(body, s.opts.MaxSize+1))
	if err != nil {
		return nil, badRequest("reading the upload: %v", err)
	}
	if int64(len(raw)) > s.opts.MaxSize {
		return nil, tooLarge(s.opts.MaxSize)
	}
	return raw, nil
}

func tooLarge(max int64) *apiError {
	return &apiError{code: 413, status: "INVALID_ARGUMENT", reason: "uploadTooLarge",
		message: fmt.Sprintf("Media larger than: %d", max)}
}

// readMultipart reads a multipart/related upload: the Message resource as
// JSON, then the message, and nothing else.
func (s *Server) readMultipart(r *http.Request) (metadata, []byte, *apiError) {
	var md metadata
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/related" || params["boundary"] == "" {
		return md, nil, badRequest("a multipart upload is multipart/related with a boundary, not %q", r.Header.Get("Content-Type"))
	}
	if r.ContentLength < 0 {
		return md, nil, &apiError{code: 411, status: "INVALID_ARGUMENT", reason: "badRequest", message: "Length Required"}
	}
	if after, ok := s.takeDropUpload(); ok {
		io.CopyN(io.Discard, r.Body, after)
		return md, nil, &apiError{dropConnection: true}
	}
	mr := multipart.NewReader(io.LimitReader(r.Body, s.opts.MaxSize+2<<20), params["boundary"])
	first, err := mr.NextRawPart()
	if err != nil {
		return md, nil, badRequest("the multipart body has no parts: %v", err)
	}
	var e *apiError
	if md, e = readMetadata(first, first.Header.Get("Content-Type")); e != nil {
		return md, nil, e
	}
	second, err := mr.NextRawPart()
	if err != nil {
		return md, nil, badRequest("the multipart body has no media part: %v", err)
	}
	if !isMessageType(second.Header.Get("Content-Type")) {
		return md, nil, badRequest("Media type '%s' is not supported. Valid media types: [message/*]", second.Header.Get("Content-Type"))
	}
	raw, err := io.ReadAll(io.LimitReader(second, s.opts.MaxSize+1))
	if err != nil {
		return md, nil, badRequest("reading the media part: %v", err)
	}
	if int64(len(raw)) > s.opts.MaxSize {
		return md, nil, tooLarge(s.opts.MaxSize)
	}
	if _, err := mr.NextRawPart(); err != io.EOF {
		return md, nil, badRequest("a multipart upload has two parts, metadata and media; found more (%v)", err)
	}
	return md, raw, nil
}

// beginSession starts a resumable upload: metadata in, the session URI out.
func (s *Server) beginSession(w http.ResponseWriter, r *http.Request, q url.Values) (int, *apiError) {
	var md metadata
	if r.ContentLength != 0 {
		var e *apiError
		if md, e = readMetadata(r.Body, r.Header.Get("Content-Type")); e != nil {
			return 0, e
		}
	}
	if ct := r.Header.Get("X-Upload-Content-Type"); ct != "" && !isMessageType(ct) {
		return 0, badRequest("Media type '%s' is not supported. Valid media types: [message/*]", ct)
	}
	size := int64(-1)
	if v := r.Header.Get("X-Upload-Content-Length"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, badRequest("X-Upload-Content-Length %q is no length", v)
		}
		if n > s.opts.MaxSize {
			return 0, tooLarge(s.opts.MaxSize)
		}
		size = n
	}
	if e := s.checkLabels(md.LabelIDs); e != nil {
		return 0, e
	}
	s.mu.Lock()
	s.nextID++
	id := fmt.Sprintf("ADPycdu%08x", s.nextID*2654435761%(1<<32))
	s.sessions[id] = &session{params: q, labelIDs: md.LabelIDs, size: size}
	s.uploadIDs = append(s.uploadIDs, id)
	s.mu.Unlock()
	w.Header().Set("Location", s.URL+"/upload/gmail/v1/users/me/messages/import?uploadType=resumable&upload_id="+id)
	w.WriteHeader(200)
	return 200, nil
}

var contentRange = regexp.MustCompile(`^bytes (?:\*|(\d+)-(\d+))/(\d+|\*)$`)

// sessionPut answers a PUT to a session URI: bytes of the message (the
// whole message without Content-Range, or a range of it), or, with
// "Content-Range: bytes */N", how much arrived (308 with Range), or the
// imported message when all did.
func (s *Server) sessionPut(w http.ResponseWriter, r *http.Request, id string) (int, *apiError) {
	s.mu.Lock()
	sess := s.sessions[id]
	s.mu.Unlock()
	if sess == nil {
		return 0, &apiError{code: 404, status: "NOT_FOUND", reason: "notFound", message: "No such upload session"}
	}
	if r.ContentLength < 0 {
		return 0, &apiError{code: 411, status: "INVALID_ARGUMENT", reason: "badRequest", message: "Length Required"}
	}
	cr := r.Header.Get("Content-Range")
	var from, total int64 = 0, sess.size
	status := false
	if cr != "" {
		m := contentRange.FindStringSubmatch(cr)
		if m == nil {
			return 0, badRequest("Content-Range %q is not bytes FROM-TO/TOTAL or bytes */TOTAL", cr)
		}
		if m[3] != "*" {
			total, _ = strconv.ParseInt(m[3], 10, 64)
		}
		if m[1] == "" {
			status = true
		} else {
			from, _ = strconv.ParseInt(m[1], 10, 64)
			to, _ := strconv.ParseInt(m[2], 10, 64)
			if to < from || to-from+1 != r.ContentLength {
				return 0, badRequest("Content-Range %q does not match Content-Length %d", cr, r.ContentLength)
			}
		}
		if sess.size >= 0 && total != sess.size {
			return 0, badRequest("Content-Range total %d is not the X-Upload-Content-Length %d", total, sess.size)
		}
	} else if sess.size >= 0 && r.ContentLength != sess.size {
		return 0, badRequest("the upload has %d bytes, not the %d announced", r.ContentLength, sess.size)
	}
	if status {
		if r.ContentLength != 0 {
			return 0, badRequest("a status query has no body")
		}
		s.mu.Lock()
		done, got := sess.done, len(sess.got)
		s.mu.Unlock()
		if done != nil {
			writeJSON(w, 200, done.resource())
			return 200, nil
		}
		return incomplete(w, got), nil
	}
	s.mu.Lock()
	if sess.done != nil {
		done := sess.done
		s.mu.Unlock()
		writeJSON(w, 200, done.resource())
		return 200, nil
	}
	if from != int64(len(sess.got)) {
		got := len(sess.got)
		s.mu.Unlock()
		return 0, badRequest("the range starts at %d; the session has %d bytes", from, got)
	}
	s.mu.Unlock()
	if after, ok := s.takeDropUpload(); ok {
		part, _ := io.ReadAll(io.LimitReader(r.Body, after))
		s.mu.Lock()
		sess.got = append(sess.got, part...)
		s.mu.Unlock()
		return 0, &apiError{dropConnection: true}
	}
	part, err := io.ReadAll(io.LimitReader(r.Body, s.opts.MaxSize+1))
	if err != nil {
		return 0, badRequest("reading the upload: %v", err)
	}
	s.mu.Lock()
	sess.got = append(sess.got, part...)
	got := sess.got
	s.mu.Unlock()
	if int64(len(got)) > s.opts.MaxSize {
		return 0, tooLarge(s.opts.MaxSize)
	}
	if total < 0 || int64(len(got)) < total {
		return incomplete(w, len(got)), nil
	}
	msg, e := s.store(sess.params, metadata{LabelIDs: sess.labelIDs}, got, "resumable")
	if e != nil {
		return 0, e
	}
	s.mu.Lock()
	sess.done = msg
	s.mu.Unlock()
	if s.takeDropReply() {
		return 0, &apiError{dropConnection: true}
	}
	writeJSON(w, 200, msg.resource())
	return 200, nil
}

// incomplete is Google's "308 Resume Incomplete": the bytes it has, if any.
func incomplete(w http.ResponseWriter, got int) int {
	if got > 0 {
		w.Header().Set("Range", fmt.Sprintf("bytes=0-%d", got-1))
	}
	w.WriteHeader(308)
	return 308
}

func (s *Server) takeDropReply() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dropReply > 0 {
		s.dropReply--
		return true
	}
	return false
}

func (s *Server) takeDropUpload() (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.dropUpload) > 0 {
		after := s.dropUpload[0]
		s.dropUpload = s.dropUpload[1:]
		return after, true
	}
	return 0, false
}

// checkLabels refuses a label id the mailbox does not have: a label's
// name given where its id belongs is refused here, as by Google.
func (s *Server) checkLabels(ids []string) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if !slices.ContainsFunc(s.labels, func(l Label) bool { return l.ID == id }) || id == "DRAFT" {
			return badRequest("Invalid label: %s", id)
		}
	}
	return nil
}

// store imports a message: its header must parse, its labels exist.
func (s *Server) store(q url.Values, md metadata, raw []byte, protocol string) (*Message, *apiError) {
	if len(raw) == 0 {
		return nil, badRequest("Media is required")
	}
	if e := s.checkLabels(md.LabelIDs); e != nil {
		return nil, e
	}
	parsed, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return nil, &apiError{code: 400, status: "INVALID_ARGUMENT", reason: "invalidArgument",
			message: "Invalid RFC822 message: " + err.Error()}
	}
	now := time.Now()
	date := now
	if q.Get("internalDateSource") == "dateHeader" {
		if t, err := mail.ParseDate(parsed.Header.Get("Date")); err == nil {
			date = t
		}
	}
	labels := slices.Clone(md.LabelIDs)
	// The classifier: a message that says it is spam is, unless the
	// import said never.
	if strings.EqualFold(parsed.Header.Get("X-Gmailtest-Spam"), "yes") && q.Get("neverMarkSpam") != "true" {
		labels = append(slices.DeleteFunc(labels, func(l string) bool { return l == "INBOX" }), "SPAM")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	id := strconv.FormatInt(int64(s.nextID)*7919, 16)
	msg := &Message{ID: id, ThreadID: id, LabelIDs: labels, InternalDate: date, Raw: raw,
		MessageID: strings.Trim(strings.TrimSpace(parsed.Header.Get("Message-Id")), "<>"), Upload: protocol,
		NeverMarkSpam: q.Get("neverMarkSpam") == "true", ProcessForCalendar: q.Get("processForCalendar") == "true",
		Deleted: q.Get("deleted") == "true"}
	s.messages = append(s.messages, msg)
	if s.opts.OnImport != nil {
		n := len(s.messages)
		s.mu.Unlock()
		s.opts.OnImport(n)
		s.mu.Lock()
	}
	return msg, nil
}

func (m *Message) resource() map[string]any {
	return map[string]any{"id": m.ID, "threadId": m.ThreadID, "labelIds": m.LabelIDs}
}

// createLabel answers labels.create: a Label resource with the fields the
// discovery document marks required for create.
func (s *Server) createLabel(w http.ResponseWriter, r *http.Request) (int, *apiError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return 0, badRequest("labels.create takes application/json, not %q", r.Header.Get("Content-Type"))
	}
	var l struct {
		Name                  string `json:"name"`
		LabelListVisibility   string `json:"labelListVisibility"`
		MessageListVisibility string `json:"messageListVisibility"`
		Type                  string `json:"type"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return 0, badRequest("Invalid JSON payload received. %v", err)
	}
	switch {
	case strings.TrimSpace(l.Name) == "":
		return 0, badRequest("Invalid label name")
	case !slices.Contains([]string{"labelShow", "labelShowIfUnread", "labelHide"}, l.LabelListVisibility):
		return 0, badRequest("Invalid labelListVisibility %q", l.LabelListVisibility)
	case !slices.Contains([]string{"show", "hide"}, l.MessageListVisibility):
		return 0, badRequest("Invalid messageListVisibility %q", l.MessageListVisibility)
	case l.Type != "" && l.Type != "user":
		return 0, badRequest("Invalid label type %q", l.Type)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, have := range s.labels {
		if strings.EqualFold(have.Name, l.Name) {
			return 0, &apiError{code: 409, status: "ABORTED", reason: "aborted", message: "Label name exists or conflicts"}
		}
	}
	s.nextID++
	nl := Label{ID: fmt.Sprintf("Label_%d", s.nextID), Name: l.Name, Type: "user",
		LabelListVisibility: l.LabelListVisibility, MessageListVisibility: l.MessageListVisibility}
	s.labels = append(s.labels, nl)
	writeJSON(w, 200, nl)
	return 200, nil
}

var msgidQuery = regexp.MustCompile(`^rfc822msgid:(\S+)$`)

// listMessages answers messages.list for the one query the fake knows,
// rfc822msgid:ID (with or without the angle brackets); SPAM and TRASH
// only with includeSpamTrash=true, as Gmail's search.
func (s *Server) listMessages(w http.ResponseWriter, q url.Values) (int, *apiError) {
	m := msgidQuery.FindStringSubmatch(q.Get("q"))
	if m == nil {
		return 0, &apiError{code: 400, status: "INVALID_ARGUMENT", reason: "invalidArgument",
			message: fmt.Sprintf("gmailtest knows only q=rfc822msgid:ID, not %q", q.Get("q"))}
	}
	want := strings.Trim(m[1], "<>")
	spamTrash := q.Get("includeSpamTrash") == "true"
	max := 100
	if v := q.Get("maxResults"); v != "" {
		max, _ = strconv.Atoi(v)
		max = min(max, 500)
	}
	var found []map[string]string
	s.mu.Lock()
	for i := len(s.messages) - 1; i >= 0 && len(found) < max; i-- {
		msg := s.messages[i]
		hidden := slices.Contains(msg.LabelIDs, "SPAM") || slices.Contains(msg.LabelIDs, "TRASH")
		if msg.MessageID == want && (spamTrash || !hidden) {
			found = append(found, map[string]string{"id": msg.ID, "threadId": msg.ThreadID})
		}
	}
	s.mu.Unlock()
	out := map[string]any{"resultSizeEstimate": len(found)}
	if len(found) > 0 {
		out["messages"] = found
	}
	writeJSON(w, 200, out)
	return 200, nil
}

// ErrNotFound is returned by Find when no message has the Message-ID.
var ErrNotFound = errors.New("gmailtest: no such message")

// Find is the message with Message-ID id (without angle brackets) that
// was imported last.
func (s *Server) Find(id string) (Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.messages) - 1; i >= 0; i-- {
		if s.messages[i].MessageID == id {
			m := *s.messages[i]
			m.LabelIDs = slices.Clone(m.LabelIDs)
			return m, nil
		}
	}
	return Message{}, ErrNotFound
}
