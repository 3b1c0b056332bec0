package gmail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-message/charset"

	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/internal/human"
)

// TooLargeError refuses a message over max_message_size for good: Gmail
// would refuse it every time.
type TooLargeError struct{ Size, Limit int64 }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("gmail: the message has %s, over the %s Gmail imports (max_message_size)", human.Bytes(e.Size), human.Bytes(e.Limit))
}

// Deliver implements plugin.Output: one users.messages.import. It returns
// no recipient results (a mailbox has none). The message's id in Gmail is
// given to d.Placed as "gmail:ID".
func (o *Output) Deliver(ctx context.Context, msg *message.Message, d plugin.Delivery) ([]plugin.RecipientResult, error) {
	if wait := o.quiet(); wait > 0 {
		// Another delivery was told to wait: do not spend a request to be
		// told again.
		return nil, plugin.Throttled(fmt.Errorf("gmail: the API asked to be left alone for %s more", wait.Round(time.Second)), wait)
	}
	c := o.content(msg)
	if c.size > o.MaxMessageSize {
		return nil, plugin.Permanent(&TooLargeError{Size: c.size, Limit: o.MaxMessageSize})
	}
	scripted := map[string]bool{}
	for _, l := range c.scripted {
		scripted[l] = true
	}
	ids, err := o.labelIDs(ctx, o.labelNames(msg, c.scripted), scripted)
	if err != nil {
		return nil, err
	}
	place := func(id string) {
		if d.Placed != nil && id != "" {
			d.Placed("gmail:" + id)
		}
	}
	if d.InDoubt {
		id, found, err := o.lookFor(ctx, c.messageID, d.Siblings)
		if err != nil {
			// Importing without knowing could leave two copies: the
			// message waits for a search that works.
			return nil, err
		}
		if found {
			o.log.Info("the in-doubt import had arrived; not importing it again", "id", id, "message_id", c.messageID)
			place(id)
			return nil, nil
		}
	}
	m, protocol, err := o.importMessage(ctx, c, ids)
	if err != nil {
		return nil, err
	}
	place(m.ID)
	o.log.Debug("imported", "id", m.ID, "upload", protocol, "bytes", c.size, "labels", strings.Join(ids, ","),
		"message_id", c.messageID)
	return nil, nil
}

// content is a message as it is imported.
type content struct {
	size int64
	body func() io.Reader
	// messageID is the Message-ID the imported message carries (its own,
	// or the one given it); "" when it has none.
	messageID string
	// scripted are the labels a script set in labels_header.
	scripted []string
}

// content prepares msg for the import: labels_header taken out (a
// script's labels read from it; the source's ignored), a Message-ID
// added where add_message_id says so. Every other byte stays as it is.
func (o *Output) content(msg *message.Message) content {
	c := content{size: msg.Size(), body: msg.Reader, messageID: msg.MessageID()}
	if msg.HeaderErr != nil {
		// No header to read or change: the bytes go as they are (and
		// Gmail says whether it takes them).
		return c
	}
	var values []string
	if o.LabelsHeader != "-" {
		values = msg.Header.Values(o.LabelsHeader)
	}
	addID := c.messageID == "" && on(o.AddMessageID)
	if len(values) == 0 && !addID {
		return c
	}
	for _, v := range o.scriptValues(msg, values) {
		for _, l := range strings.Split(v, ",") {
			if l = labelName(l); l != "" && !slices.Contains(c.scripted, l) {
				c.scripted = append(c.scripted, l)
			}
		}
	}
	h := msg.Header.Clone()
	if len(values) > 0 {
		h.Del(o.LabelsHeader)
	}
	if addID {
		// Made from Date, From, Subject and size (message.Identity), so
		// that each try gives the same one, and the engine's count of
		// siblings (Delivery.Siblings) is of the same identity.
		c.messageID = msg.Identity()
		h.Add("Message-ID", "<"+c.messageID+">")
	}
	var head bytes.Buffer
	h.WriteTo(&head)
	hb := head.Bytes()
	c.size = int64(len(hb)) + msg.BodySize()
	c.body = func() io.Reader { return io.MultiReader(bytes.NewReader(hb), msg.Body()) }
	return c
}

// labelName is one name of labels_header: trimmed, and decoded where it
// is an RFC 2047 encoded word, as a script's msg:label and set_header
// write a name that is not ASCII ("=?utf-8?q?Gesch=C3=A4ftlich?=").
func labelName(s string) string {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "=?") {
		if d, err := labelDecoder.DecodeHeader(s); err == nil {
			s = strings.TrimSpace(d)
		}
	}
	return s
}

var labelDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// scriptValues are the values of labels_header that a script set: those
// the source's own header did not have. A message arriving with the field
// could otherwise label itself (into TRASH, out of INBOX) in the user's
// mailbox; its field is removed all the same.
func (o *Output) scriptValues(msg *message.Message, values []string) []string {
	if len(values) == 0 || !msg.HeaderChanged() {
		if len(values) > 0 {
			o.log.Warn("the message came with a labels header of its own; ignored and removed", "header", o.LabelsHeader,
				"message_id", msg.MessageID())
		}
		return nil
	}
	max := o.env.Spool.MaxHeader
	if max <= 0 {
		max = message.DefaultSpool.MaxHeader
	}
	block, err := message.ReadHeaderBlock(msg.Original(), max)
	if err != nil {
		return values
	}
	orig := message.New(block, message.Source{})
	theirs := orig.Header.Values(o.LabelsHeader)
	var ours []string
	for _, v := range values {
		if i := slices.Index(theirs, v); i >= 0 {
			theirs = slices.Delete(theirs, i, i+1)
			continue
		}
		ours = append(ours, v)
	}
	if len(ours) < len(values) {
		o.log.Warn("the message came with a labels header of its own; ignored and removed", "header", o.LabelsHeader,
			"message_id", msg.MessageID())
	}
	return ours
}

// labelNames are the labels msg gets, by name: the config's, INBOX and
// UNREAD as configured, the source's flags mapped, then the script's.
func (o *Output) labelNames(msg *message.Message, scripted []string) []string {
	flag := func(f string) bool {
		return on(o.MapFlags) && slices.ContainsFunc(msg.Flags, func(g string) bool { return strings.EqualFold(g, f) })
	}
	names := slices.Clone(o.Labels)
	if on(o.Inbox) {
		names = append(names, "INBOX")
	}
	if on(o.Unread) && !flag(`\Seen`) {
		names = append(names, "UNREAD")
	}
	if flag(`\Flagged`) {
		names = append(names, "STARRED")
	}
	return append(names, scripted...)
}

// lookFor searches the mailbox for a message with Message-ID id (in SPAM
// and TRASH too: the classifier may have put it there, a person may have
// deleted it since) and reports whether it holds more copies than
// siblings, the copies that other messages of the same identity account
// for. Without an id, or a scope that allows the search, it cannot know,
// and says so in the log: the message is imported again.
func (o *Output) lookFor(ctx context.Context, id string, siblings int) (string, bool, error) {
	switch {
	case id == "":
		o.log.Warn("in doubt, and the message has no Message-ID to look for (add_message_id = false): importing it again; Gmail may now hold it twice")
		return "", false, nil
	case !o.can.search:
		o.log.Warn("in doubt, and the scopes given do not allow a search: importing it again; Gmail may now hold it twice",
			"message_id", id, "scopes", strings.Join(o.Scopes, " "))
		return "", false, nil
	}
	q := url.Values{"q": {"rfc822msgid:" + id}, "includeSpamTrash": {"true"}, "maxResults": {strconv.Itoa(min(siblings+1, 500))}}
	resp, cancel, err := o.do(ctx, request{op: "messages.list", method: http.MethodGet,
		url: o.apiURL("/gmail/v1/users/me/messages", q), units: unitsMessagesList})
	if err != nil {
		return "", false, o.classify(err)
	}
	var reply struct {
		Messages []struct {
			ID string `json:"id"`
		} `json:"messages"`
	}
	if err := readJSON(resp, cancel, &reply); err != nil {
		return "", false, fmt.Errorf("gmail messages.list: the reply is no message list: %w", err)
	}
	if len(reply.Messages) > siblings {
		return reply.Messages[0].ID, true, nil
	}
	return "", false, nil
}

// inDoubt marks an import's failure after which Gmail may hold the
// message; a throttling reply keeps its wait.
func (o *Output) inDoubt(err error) error {
	var ae *APIError
	if errors.As(err, &ae) && ae.Throttling() {
		err = o.throttled(ae)
	}
	return plugin.InDoubt(err)
}

// classify says what a failure means for the message, where Gmail did
// not take it:
//
//   - throttling (429; 403 over a rate or quota limit): the message waits
//     as long as the API asked (plugin.Throttled);
//   - an import refused for the message itself (400 about its content,
//     413): permanent, and the engine quarantines it;
//   - everything else waits at its source: a 5xx, no reply, a refused
//     or missing login (whose error names the command that fixes it), too
//     few scopes, a label deleted in Gmail meanwhile (the cache is emptied
//     and the labels made again), and a 400 about the request itself (a
//     parameter, a header: mailflow's mistake, not the message's).
func (o *Output) classify(err error) error {
	var ae *APIError
	if !errors.As(err, &ae) {
		return err
	}
	switch {
	case ae.Throttling():
		return o.throttled(ae)
	case ae.StatusCode == http.StatusForbidden && ae.Reason == "insufficientPermissions":
		return fmt.Errorf("%w; log in again with the scopes this output needs (%s): mailflow auth login -c %s %s",
			err, strings.Join(o.Scopes, " "), o.env.ConfigPath, o.env.Name)
	case ae.Op != "messages.import":
		return err
	case ae.StatusCode == http.StatusRequestEntityTooLarge:
		return plugin.Permanent(err)
	case ae.StatusCode != http.StatusBadRequest:
		return err
	case ae.LocationType == "parameter" || ae.LocationType == "header":
		o.log.Error("gmail refused the request itself, not the message (a mistake in mailflow?); the message waits at its source", "err", err)
		return err
	case strings.Contains(strings.ToLower(ae.Message), "label"):
		// "Invalid label: Label_12": deleted in Gmail since it was
		// listed. Gmail gives no reason code of its own for it.
		o.labels.forget()
		return err
	case ae.Status == "FAILED_PRECONDITION":
		return err // about the account (mail service off), not the message
	}
	return plugin.Permanent(err)
}
