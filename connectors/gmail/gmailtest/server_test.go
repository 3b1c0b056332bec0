package gmailtest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/mailflow/mailflow/connectors/gmail/gmailtest"
)

const token = "tok-123"

func start(t *testing.T, opts gmailtest.Options) *gmailtest.Server {
	t.Helper()
	if opts.Valid == nil && opts.Tokens == nil {
		opts.Tokens = []string{token}
	}
	s, err := gmailtest.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

const msg = "Message-ID: <a@example.org>\r\nDate: Tue, 02 Jan 2024 10:00:00 +0000\r\nFrom: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n"

// multipartBody is an import's multipart/related body: parts in order,
// each a content type and its bytes.
func multipartBody(parts ...[2]string) (string, []byte) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		w, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {p[0]}})
		io.WriteString(w, p[1])
	}
	mw.Close()
	return "multipart/related; boundary=" + mw.Boundary(), buf.Bytes()
}

type call struct {
	method, path, contentType, auth string
	body                            []byte
	header                          map[string]string
}

func (c call) do(t *testing.T, s *gmailtest.Server) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(c.method, s.URL+c.path, bytes.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	if c.contentType != "" {
		req.Header.Set("Content-Type", c.contentType)
	}
	switch c.auth {
	case "":
		req.Header.Set("Authorization", "Bearer "+token)
	case "-":
	default:
		req.Header.Set("Authorization", c.auth)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp, out
}

const imp = "/upload/gmail/v1/users/me/messages/import?internalDateSource=dateHeader&"

// A request Google would refuse is refused: the fake is a check of the
// output, not a sink.
func TestRefusesWhatGoogleWould(t *testing.T) {
	s := start(t, gmailtest.Options{})
	meta := `{"labelIds":["INBOX","UNREAD"]}`
	good, goodBody := multipartBody([2]string{"application/json; charset=UTF-8", meta}, [2]string{"message/rfc822", msg})
	cases := []struct {
		name   string
		c      call
		status int
		says   string
	}{
		{"a good multipart import", call{method: "POST", path: imp + "uploadType=multipart", contentType: good, body: goodBody}, 200, ""},
		{"a good media import", call{method: "POST", path: imp + "uploadType=media", contentType: "message/rfc822", body: []byte(msg)}, 200, ""},
		{"no upload protocol", call{method: "POST", path: imp[:len(imp)-1], contentType: good, body: goodBody}, 400, "uploadType"},
		{"an upload protocol that is none", call{method: "POST", path: imp + "uploadType=simple", contentType: good, body: goodBody}, 400, "uploadType"},
		{"media as multipart", call{method: "POST", path: imp + "uploadType=multipart", contentType: "message/rfc822", body: []byte(msg)}, 400, "multipart/related"},
		{"multipart as media", call{method: "POST", path: imp + "uploadType=media", contentType: good, body: goodBody}, 400, "Media type"},
		{"media without Content-Type", call{method: "POST", path: imp + "uploadType=media", body: []byte(msg)}, 400, "Media type"},
		{"media as octet-stream", call{method: "POST", path: imp + "uploadType=media", contentType: "application/octet-stream", body: []byte(msg)}, 400, "Media type"},
		{"a label name where its id belongs", func() call {
			ct, b := multipartBody([2]string{"application/json", `{"labelIds":["Work"]}`}, [2]string{"message/rfc822", msg})
			return call{method: "POST", path: imp + "uploadType=multipart", contentType: ct, body: b}
		}(), 400, "Invalid label: Work"},
		{"lower-case system label", func() call {
			ct, b := multipartBody([2]string{"application/json", `{"labelIds":["inbox"]}`}, [2]string{"message/rfc822", msg})
			return call{method: "POST", path: imp + "uploadType=multipart", contentType: ct, body: b}
		}(), 400, "Invalid label"},
		{"labels under the wrong name", func() call {
			ct, b := multipartBody([2]string{"application/json", `{"labels":["INBOX"]}`}, [2]string{"message/rfc822", msg})
			return call{method: "POST", path: imp + "uploadType=multipart", contentType: ct, body: b}
		}(), 400, "unknown field"},
		{"parts in the wrong order", func() call {
			ct, b := multipartBody([2]string{"message/rfc822", msg}, [2]string{"application/json", meta})
			return call{method: "POST", path: imp + "uploadType=multipart", contentType: ct, body: b}
		}(), 400, "application/json"},
		{"a third part", func() call {
			ct, b := multipartBody([2]string{"application/json", meta}, [2]string{"message/rfc822", msg}, [2]string{"text/plain", "x"})
			return call{method: "POST", path: imp + "uploadType=multipart", contentType: ct, body: b}
		}(), 400, "two parts"},
		{"no internalDateSource", call{method: "POST", path: "/upload/gmail/v1/users/me/messages/import?uploadType=media", contentType: "message/rfc822", body: []byte(msg)}, 400, "internalDateSource"},
		{"an internalDateSource that is none", call{method: "POST", path: "/upload/gmail/v1/users/me/messages/import?uploadType=media&internalDateSource=header", contentType: "message/rfc822", body: []byte(msg)}, 400, "internalDateSource"},
		{"a boolean that is none", call{method: "POST", path: imp + "uploadType=media&neverMarkSpam=yes", contentType: "message/rfc822", body: []byte(msg)}, 400, "neverMarkSpam"},
		{"a parameter import does not have", call{method: "POST", path: imp + "uploadType=media&labelIds=INBOX", contentType: "message/rfc822", body: []byte(msg)}, 400, "Cannot bind"},
		{"no bearer token", call{method: "POST", path: imp + "uploadType=media", contentType: "message/rfc822", body: []byte(msg), auth: "-"}, 401, ""},
		{"a wrong bearer token", call{method: "POST", path: imp + "uploadType=media", contentType: "message/rfc822", body: []byte(msg), auth: "Bearer nope"}, 401, ""},
		{"a token that is no bearer token", call{method: "POST", path: imp + "uploadType=media", contentType: "message/rfc822", body: []byte(msg), auth: "Basic " + token}, 401, ""},
		{"the token in the URL", call{method: "POST", path: imp + "uploadType=media&access_token=" + token, contentType: "message/rfc822", body: []byte(msg), auth: "-"}, 400, "URL"},
		{"another user's mailbox", call{method: "POST", path: strings.Replace(imp, "/me/", "/other@example.com/", 1) + "uploadType=media", contentType: "message/rfc822", body: []byte(msg)}, 403, "Delegation"},
		{"the metadata path", call{method: "POST", path: "/gmail/v1/users/me/messages/import?internalDateSource=dateHeader", contentType: "application/json", body: []byte(`{"raw":"eA"}`)}, 501, ""},
		{"not a message", call{method: "POST", path: imp + "uploadType=media", contentType: "message/rfc822", body: []byte("no header here\r\n")}, 400, "Invalid RFC822"},
		{"a label without its visibilities", call{method: "POST", path: "/gmail/v1/users/me/labels", contentType: "application/json", body: []byte(`{"name":"Work"}`)}, 400, "Visibility"},
		{"a label as a form", call{method: "POST", path: "/gmail/v1/users/me/labels", contentType: "application/x-www-form-urlencoded", body: []byte(`name=Work`)}, 400, "application/json"},
		{"a system label made again", call{method: "POST", path: "/gmail/v1/users/me/labels", contentType: "application/json", body: []byte(`{"name":"Inbox","labelListVisibility":"labelShow","messageListVisibility":"show"}`)}, 409, "exists"},
		{"a search the fake does not know", call{method: "GET", path: "/gmail/v1/users/me/messages?q=from:a@example.org"}, 400, "rfc822msgid"},
		{"maxResults that is no number", call{method: "GET", path: "/gmail/v1/users/me/messages?q=rfc822msgid:a@example.org&maxResults=all"}, 400, "maxResults"},
		{"q given twice", call{method: "GET", path: "/gmail/v1/users/me/messages?q=rfc822msgid:a@example.org&q=rfc822msgid:b@example.org"}, 400, "Repeated"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, out := tc.c.do(t, s)
			if resp.StatusCode != tc.status {
				t.Fatalf("%d %v, want %d", resp.StatusCode, out, tc.status)
			}
			if resp.StatusCode/100 == 2 {
				return
			}
			e, _ := out["error"].(map[string]any)
			if e == nil || e["code"] != float64(tc.status) {
				t.Fatalf("not Google's error shape: %v", out)
			}
			if !strings.Contains(fmt.Sprint(e["message"]), tc.says) {
				t.Fatalf("%q does not say %q", e["message"], tc.says)
			}
			if tc.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Fatal("a 401 without WWW-Authenticate")
			}
		})
	}
	if n := len(s.Messages()); n != 2 {
		t.Fatalf("%d messages stored, want the 2 good ones", n)
	}
	m := s.Messages()[0]
	if m.InternalDate.Format(time.RFC3339) != "2024-01-02T10:00:00Z" || m.Upload != "multipart" || strings.Join(m.LabelIDs, ",") != "INBOX,UNREAD" {
		t.Fatalf("stored %+v", m)
	}
}

// A token's scopes limit it as the document says: gmail.insert imports but
// lists no labels; gmail.metadata lists but does not search.
func TestScopes(t *testing.T) {
	s := start(t, gmailtest.Options{Scopes: []string{gmailtest.ScopeInsert}})
	if resp, _ := (call{method: "POST", path: imp + "uploadType=media", contentType: "message/rfc822", body: []byte(msg)}).do(t, s); resp.StatusCode != 200 {
		t.Fatalf("import with gmail.insert: %d", resp.StatusCode)
	}
	if resp, out := (call{method: "GET", path: "/gmail/v1/users/me/labels"}).do(t, s); resp.StatusCode != 403 || !strings.Contains(fmt.Sprint(out), "insufficientPermissions") {
		t.Fatalf("labels.list with gmail.insert: %d %v", resp.StatusCode, out)
	}
	s = start(t, gmailtest.Options{Scopes: []string{gmailtest.ScopeMetadata}})
	if resp, _ := (call{method: "GET", path: "/gmail/v1/users/me/messages?q=rfc822msgid:a@example.org"}).do(t, s); resp.StatusCode != 403 {
		t.Fatalf("a search with gmail.metadata: %d", resp.StatusCode)
	}
}

// The resumable protocol as Google's: a session begun with the metadata,
// the bytes in ranges, a status query answered 308 with Range until all
// arrived, then the message.
func TestResumableProtocol(t *testing.T) {
	s := start(t, gmailtest.Options{})
	resp, _ := (call{method: "POST", path: "/resumable/upload/gmail/v1/users/me/messages/import?internalDateSource=dateHeader&uploadType=resumable",
		contentType: "application/json; charset=UTF-8", body: []byte(`{"labelIds":["INBOX"]}`),
		header: map[string]string{"X-Upload-Content-Type": "message/rfc822", "X-Upload-Content-Length": fmt.Sprint(len(msg))}}).do(t, s)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != 200 || !strings.HasPrefix(loc, s.URL+"/upload/") {
		t.Fatalf("begin: %d %q", resp.StatusCode, loc)
	}
	path := strings.TrimPrefix(loc, s.URL)
	put := func(cr string, body string) *http.Response {
		resp, _ := (call{method: "PUT", path: path, contentType: "message/rfc822", body: []byte(body), header: map[string]string{"Content-Range": cr}}).do(t, s)
		return resp
	}
	if r := put(fmt.Sprintf("bytes */%d", len(msg)), ""); r.StatusCode != 308 || r.Header.Get("Range") != "" {
		t.Fatalf("status before any byte: %d %q", r.StatusCode, r.Header.Get("Range"))
	}
	if r := put(fmt.Sprintf("bytes 0-9/%d", len(msg)), msg[:10]); r.StatusCode != 308 || r.Header.Get("Range") != "bytes=0-9" {
		t.Fatalf("first range: %d %q", r.StatusCode, r.Header.Get("Range"))
	}
	if r := put(fmt.Sprintf("bytes 20-29/%d", len(msg)), msg[20:30]); r.StatusCode != 400 {
		t.Fatalf("a gap: %d", r.StatusCode)
	}
	if r := put(fmt.Sprintf("bytes 10-%d/%d", len(msg)-1, len(msg)), msg[10:]); r.StatusCode != 200 {
		t.Fatalf("the rest: %d", r.StatusCode)
	}
	if r := put(fmt.Sprintf("bytes */%d", len(msg)), ""); r.StatusCode != 200 {
		t.Fatalf("status after: %d", r.StatusCode)
	}
	if ms := s.Messages(); len(ms) != 1 || string(ms[0].Raw) != msg || ms[0].Upload != "resumable" {
		t.Fatalf("stored %+v", ms)
	}
}

// The knobs: a storm answers 429 with Retry-After, then passes.
func TestStorm(t *testing.T) {
	s := start(t, gmailtest.Options{})
	s.Storm(2, 1500*time.Millisecond)
	for i, want := range []int{429, 429, 200} {
		resp, _ := (call{method: "GET", path: "/gmail/v1/users/me/labels"}).do(t, s)
		if resp.StatusCode != want {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
		if want == 429 && resp.Header.Get("Retry-After") != "2" {
			t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
		}
	}
}
