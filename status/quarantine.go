package status

import (
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"

	gomessage "github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/quarantine"
)

// entryView is a quarantined message as its page shows it.
type entryView struct {
	quarantine.Entry
	From, Subject, Date string
	Header              []string // its fields, as written
	Text                string   // its first text/plain part, decoded; never its HTML
	TextNote            string   // why there is no text to show
}

// listView is the quarantine page.
type listView struct {
	Query   string
	Entries []entryView
	All     int
}

func (s *Server) quarantineList(w http.ResponseWriter, r *http.Request, e *engine.Engine) {
	entries, err := e.Quarantine.List()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	v := listView{Query: q, All: len(entries)}
	for _, en := range entries {
		ev := s.summary(e, en)
		if q == "" || matches(ev, q) {
			v.Entries = append(v.Entries, ev)
		}
	}
	flash := ""
	switch r.URL.Query().Get("done") {
	case "resend":
		flash = "Resent: " + r.URL.Query().Get("outcome")
	case "delete":
		flash = "Deleted."
	}
	s.render(w, r, "quarantine.html", page{Title: "Quarantine", Flash: flash, Data: v})
}

// matches is the list's filter: the words of q, each somewhere in the
// entry's reason, sender, subject, input or id.
func matches(ev entryView, q string) bool {
	hay := strings.ToLower(strings.Join([]string{ev.Reason, ev.From, ev.Subject, ev.Input, ev.ID, ev.MessageID}, " "))
	for _, w := range strings.Fields(strings.ToLower(q)) {
		if !strings.Contains(hay, w) {
			return false
		}
	}
	return true
}

// summary is an entry with its sender, subject and date from its header.
func (s *Server) summary(e *engine.Engine, en quarantine.Entry) entryView {
	ev := entryView{Entry: en}
	_, msg, err := e.Quarantine.Get(en.ID)
	if err != nil {
		return ev
	}
	defer msg.Close()
	dec := &mime.WordDecoder{}
	ev.From, _ = dec.DecodeHeader(msg.Header.Get("From"))
	ev.Subject, _ = dec.DecodeHeader(msg.Header.Get("Subject"))
	ev.Date = msg.Header.Get("Date")
	return ev
}

func (s *Server) quarantineEntry(w http.ResponseWriter, r *http.Request, e *engine.Engine) {
	ev, msg, ok := s.entry(w, r, e)
	if !ok {
		return
	}
	defer msg.Close()
	ev.Header = msg.Header.Lines()
	ev.Text, ev.TextNote = textPart(msg)
	s.render(w, r, "entry.html", page{Title: "Quarantined " + ev.ID, Data: ev})
}

func (s *Server) entry(w http.ResponseWriter, r *http.Request, e *engine.Engine) (entryView, *message.Message, bool) {
	en, msg, err := e.Quarantine.Get(r.PathValue("id"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return entryView{}, nil, false
	}
	ev := s.summary(e, en)
	return ev, msg, true
}

// textPart is the message's first text/plain part, decoded to UTF-8: the
// page shows a message's words, never its HTML (which could run a script
// or call home).
func textPart(msg *message.Message) (text, note string) {
	ent, err := gomessage.Read(msg.Reader())
	if ent == nil {
		return "", fmt.Sprintf("the message could not be read as MIME (%v): download it to look at it", err)
	}
	htmlOnly := false
	ent.Walk(func(_ []int, part *gomessage.Entity, _ error) error {
		if text != "" {
			return nil
		}
		t, _, _ := part.Header.ContentType()
		switch {
		case t == "text/plain" || t == "":
			b, _ := io.ReadAll(io.LimitReader(part.Body, 256<<10))
			text = string(b)
		case t == "text/html":
			htmlOnly = true
		}
		return nil
	})
	switch {
	case text != "":
		return text, ""
	case htmlOnly:
		return "", "the message has only an HTML part, which this page does not show: download it to look at it"
	}
	return "", "the message has no text part"
}

func (s *Server) quarantineRaw(w http.ResponseWriter, r *http.Request, e *engine.Engine) {
	_, msg, err := e.Quarantine.Get(r.PathValue("id"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	defer msg.Close()
	// A download, never shown by the browser: it is untrusted mail.
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="`+r.PathValue("id")+`.eml"`)
	io.Copy(w, msg.Original())
}

// confirmView is the page that asks before an action.
type confirmView struct {
	Action string // resend or delete
	IDs    []string
	Query  string
}

// confirm asks before resending or deleting one entry ("all": every entry
// the query q matches).
func (s *Server) confirm(w http.ResponseWriter, r *http.Request, e *engine.Engine) {
	action := r.PathValue("action")
	if action != "resend" && action != "delete" {
		http.NotFound(w, r)
		return
	}
	ids, q, err := s.targets(e, r.PathValue("id"), r.URL.Query().Get("q"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	s.render(w, r, "confirm.html", page{Title: "Confirm", Data: confirmView{Action: action, IDs: ids, Query: q}})
}

// targets are the entries an action is for: id, or with id "all" every
// entry q matches.
func (s *Server) targets(e *engine.Engine, id, q string) ([]string, string, error) {
	if id != "all" {
		if _, _, err := e.Quarantine.Get(id); err != nil {
			return nil, "", err
		}
		return []string{id}, "", nil
	}
	entries, err := e.Quarantine.List()
	if err != nil {
		return nil, "", err
	}
	var ids []string
	for _, en := range entries {
		if matches(s.summary(e, en), q) {
			ids = append(ids, en.ID)
		}
	}
	return ids, q, nil
}

// act resends or deletes, as confirmed, and logs who did it.
func (s *Server) act(w http.ResponseWriter, r *http.Request, e *engine.Engine) {
	action := r.PathValue("action")
	if action != "resend" && action != "delete" {
		http.NotFound(w, r)
		return
	}
	ids, _, err := s.targets(e, r.PathValue("id"), r.PostFormValue("q"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	if confirmed := r.PostForm["id"]; r.PathValue("id") == "all" {
		// Only what the person saw on the confirmation page.
		ids = slices.DeleteFunc(ids, func(id string) bool { return !slices.Contains(confirmed, id) })
	}
	var outcomes []string
	for _, id := range ids {
		var outcome string
		var err error
		if action == "resend" {
			outcome, err = e.Resend(context.WithoutCancel(r.Context()), id)
		} else {
			outcome, err = "deleted", e.Quarantine.Delete(id)
		}
		if err != nil {
			outcome = "failed: " + err.Error()
		}
		s.opts.Log.Info("status page: quarantine "+action, "id", id, "outcome", outcome, "by", "admin", "from", r.RemoteAddr)
		outcomes = append(outcomes, id+": "+outcome)
	}
	http.Redirect(w, r, "/quarantine?done="+action+"&outcome="+url.QueryEscape(strings.Join(outcomes, "; ")), http.StatusSeeOther)
}
