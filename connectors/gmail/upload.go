package gmail

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"regexp"
	"strconv"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"
)

// imported is the part of the API's Message resource that an import
// answers with.
type imported struct {
	ID       string   `json:"id"`
	ThreadID string   `json:"threadId"`
	LabelIDs []string `json:"labelIds"`
}

// opUpload names a resumable session's PUTs in errors and logs: a 400
// there is about the upload's framing, not the message.
const opUpload = "messages.import upload"

// importPath is the upload path of users.messages.import.
const importPath = "/upload/gmail/v1/users/me/messages/import"

// importParams are the import's query parameters but uploadType. The
// date's source is always said, never left to a default: Google's is
// dateHeader for import but receivedTime for insert.
func (o *Output) importParams(uploadType string) url.Values {
	return url.Values{"uploadType": {uploadType}, "internalDateSource": {o.InternalDateSource},
		"neverMarkSpam": {strconv.FormatBool(o.NeverMarkSpam)}, "processForCalendar": {strconv.FormatBool(o.ProcessForCalendar)}}
}

// importMessage uploads c with the labels ids, choosing the protocol:
//
//   - media (uploadType=media: the message alone, message/rfc822) when
//     there are no labels to give: nothing to say but the message;
//   - multipart (uploadType=multipart: a multipart/related body, the
//     Message resource as JSON with its labelIds, then the message) when
//     there are labels, which only the metadata can carry;
//   - resumable (uploadType=resumable: the metadata in a first request,
//     then the message PUT to the session URI it answers with) above
//     resumable_above, so that a dropped connection costs only what had
//     not arrived.
func (o *Output) importMessage(ctx context.Context, c content, ids []string) (*imported, string, error) {
	switch {
	case c.size > o.ResumableAbove:
		m, err := o.resumable(ctx, c, ids)
		return m, "resumable", err
	case len(ids) == 0:
		m, err := o.simple(ctx, "media", c, http.Header{"Content-Type": {"message/rfc822"}}, c.body, c.size)
		return m, "media", err
	}
	meta, err := metadataJSON(ids)
	if err != nil {
		return nil, "", err
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	jp, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/json; charset=UTF-8"}})
	jp.Write(meta)
	mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"message/rfc822"}})
	head := bytes.Clone(buf.Bytes())
	buf.Reset()
	mw.Close()
	tail := bytes.Clone(buf.Bytes())
	body := func() io.Reader { return io.MultiReader(bytes.NewReader(head), c.body(), bytes.NewReader(tail)) }
	m, err := o.simple(ctx, "multipart", c, http.Header{"Content-Type": {"multipart/related; boundary=" + mw.Boundary()}},
		body, int64(len(head))+c.size+int64(len(tail)))
	return m, "multipart", err
}

// metadataJSON is the Message resource an upload carries: its labels.
func metadataJSON(ids []string) ([]byte, error) {
	return json.Marshal(struct {
		LabelIDs []string `json:"labelIds,omitempty"`
	}{ids})
}

// simple is a one-request upload (media or multipart).
func (o *Output) simple(ctx context.Context, uploadType string, c content, h http.Header, body func() io.Reader, size int64) (*imported, error) {
	resp, cancel, err := o.do(ctx, request{op: "messages.import", method: http.MethodPost,
		url: o.apiURL(importPath, o.importParams(uploadType)), header: h, body: body, size: size, units: unitsImport})
	if err != nil {
		if maySendAll(err) {
			return nil, o.inDoubt(err)
		}
		return nil, o.classify(err)
	}
	return o.readImported(resp, cancel)
}

// readImported reads an import's reply. The import happened whatever the
// body says: a reply that cannot be read loses only the id.
func (o *Output) readImported(resp *http.Response, cancel context.CancelFunc) (*imported, error) {
	var m imported
	if err := readJSON(resp, cancel, &m); err != nil || m.ID == "" {
		o.log.Warn("gmail imported the message, but its reply has no message id", "err", err)
	}
	return &m, nil
}

// maxResumes bounds how often one delivery picks a resumable upload up
// again after an interruption before it leaves the message for later.
const maxResumes = 5

var rangeHeader = regexp.MustCompile(`^bytes=0-(\d+)$`)

// resumable uploads by Google's resumable protocol: the metadata POSTed
// with X-Upload-Content-Type and -Length, answered by a session URI in
// Location; the message PUT there. When the PUT breaks (no reply, a 5xx),
// a PUT with "Content-Range: bytes */SIZE" asks how much arrived: 308 with
// Range says up to where (the upload goes on from there), 200 or 201 that
// all of it did and the message was imported. A session that is gone
// (404, 410) is started anew.
func (o *Output) resumable(ctx context.Context, c content, ids []string) (*imported, error) {
	meta, err := metadataJSON(ids)
	if err != nil {
		return nil, err
	}
	var session string
	var from int64
	sentAll := false // every byte went out on some try: Gmail may hold it
	for try := 0; try <= maxResumes; try++ {
		if session == "" {
			if session, err = o.beginSession(ctx, c, meta); err != nil {
				return nil, err
			}
			from = 0
		}
		resp, cancel, err := o.do(ctx, o.putRange(session, c, from))
		switch {
		case err == nil && resp.StatusCode/100 == 2:
			return o.readImported(resp, cancel)
		case err == nil:
			// 308 to a PUT that was not a status query: Gmail wants
			// more than it got.
			resp.Body.Close()
			cancel()
		case sessionGone(err):
			if sentAll {
				return nil, o.goneAfterAll()
			}
			o.log.Info("gmail resumable upload: the session is gone; starting a new one")
			session = ""
			continue
		case !resumableAfter(err):
			return nil, o.uploadFailure(err, sentAll)
		default:
			sentAll = sentAll || maySendAll(err)
		}
		// Ask how much arrived.
		got, m, gone, qerr := o.uploadStatus(ctx, session, c.size)
		switch {
		case qerr != nil:
			return nil, o.uploadFailure(qerr, sentAll)
		case m != nil:
			return m, nil
		case gone && sentAll:
			return nil, o.goneAfterAll()
		case gone:
			o.log.Info("gmail resumable upload: the session is gone; starting a new one")
			session = ""
		default:
			o.log.Info("gmail resumable upload interrupted; resuming", "received", got, "size", c.size)
			from = got
		}
	}
	return nil, o.uploadFailure(fmt.Errorf("gmail messages.import: the resumable upload was interrupted %d times", maxResumes+1), sentAll)
}

// goneAfterAll is a session that expired after every byte had gone out:
// it may have imported the message, and a new session would import it
// again. In doubt: the next try looks for it first.
func (o *Output) goneAfterAll() error {
	return plugin.InDoubt(errors.New("gmail messages.import: the upload session is gone, after all of the message was sent"))
}

// maySendAll reports whether a failed PUT may have handed every byte it
// carried to Gmail: no reply after its body went out, or a 5xx.
func maySendAll(err error) bool {
	var te *TransportError
	if errors.As(err, &te) {
		return te.BodySent
	}
	var ae *APIError
	return errors.As(err, &ae) && ae.StatusCode/100 == 5
}

// sessionGone reports whether a session's PUT says it expired.
func sessionGone(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && (ae.StatusCode == http.StatusNotFound || ae.StatusCode == http.StatusGone)
}

// resumableAfter reports whether a PUT's failure is one to ask the
// session about: no reply, or a 5xx (Google: resume the upload).
func resumableAfter(err error) bool {
	var te *TransportError
	var ae *APIError
	return errors.As(err, &te) || errors.As(err, &ae) && ae.StatusCode/100 == 5
}

// uploadFailure is what a resumable upload's failure means: in doubt
// once every byte went out on some try (whatever answered after that
// cannot say whether Gmail imported the message), else as classify says.
func (o *Output) uploadFailure(err error, sentAll bool) error {
	if sentAll || maySendAll(err) {
		return o.inDoubt(err)
	}
	return o.classify(err)
}

// beginSession starts a resumable upload and returns its session URI.
func (o *Output) beginSession(ctx context.Context, c content, meta []byte) (string, error) {
	resp, cancel, err := o.do(ctx, request{op: "messages.import", method: http.MethodPost,
		url: o.apiURL(importPath, o.importParams("resumable")), units: unitsImport,
		header: http.Header{"Content-Type": {"application/json; charset=UTF-8"}, "X-Upload-Content-Type": {"message/rfc822"},
			"X-Upload-Content-Length": {strconv.FormatInt(c.size, 10)}},
		body: func() io.Reader { return bytes.NewReader(meta) }, size: int64(len(meta))})
	if err != nil {
		// Nothing of the message was sent: never in doubt.
		return "", o.classify(err)
	}
	defer cancel()
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	u, perr := url.Parse(loc)
	if loc == "" || perr != nil || !u.IsAbs() {
		return "", fmt.Errorf("gmail messages.import: the resumable upload began without a session URI")
	}
	// The session must stay with the API: a session URI elsewhere would
	// send the bearer token and the message there.
	if base, _ := url.Parse(o.base); u.Scheme != base.Scheme || u.Host != base.Host {
		return "", fmt.Errorf("gmail messages.import: the session URI is on %s, not on the API's host", u.Host)
	}
	return loc, nil
}

// putRange sends the message from byte from on to the session.
func (o *Output) putRange(session string, c content, from int64) request {
	h := http.Header{"Content-Type": {"message/rfc822"}}
	if from > 0 {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, c.size-1, c.size))
	}
	return request{op: opUpload, method: http.MethodPut, url: session, header: h, size: c.size - from,
		body: func() io.Reader {
			r := c.body()
			if from > 0 {
				// The bytes before from arrived: skip them (a spooled
				// message is read from its file again).
				if _, err := io.CopyN(io.Discard, r, from); err != nil {
					return &errReader{err}
				}
			}
			return r
		}}
}

type errReader struct{ err error }

func (e *errReader) Read([]byte) (int, error) { return 0, e.err }

// uploadStatus asks the session how much arrived: got bytes, or the
// imported message when all did, or gone when the session expired.
func (o *Output) uploadStatus(ctx context.Context, session string, size int64) (got int64, m *imported, gone bool, err error) {
	// A broken connection may need a moment; a few tries, bounded.
	for try := 0; ; try++ {
		var resp *http.Response
		var cancel context.CancelFunc
		resp, cancel, err = o.do(ctx, request{op: opUpload, method: http.MethodPut, url: session,
			header: http.Header{"Content-Range": {fmt.Sprintf("bytes */%d", size)}},
			body:   func() io.Reader { return bytes.NewReader(nil) }})
		switch {
		case err == nil && resp.StatusCode/100 == 2:
			m, err = o.readImported(resp, cancel)
			return 0, m, false, err
		case err == nil:
			resp.Body.Close()
			cancel()
			r := rangeHeader.FindStringSubmatch(resp.Header.Get("Range"))
			if r == nil {
				return 0, nil, false, nil // nothing arrived
			}
			n, _ := strconv.ParseInt(r[1], 10, 64)
			return n + 1, nil, false, nil
		case sessionGone(err):
			return 0, nil, true, nil
		case try < 2 && resumableAfter(err):
			t := time.NewTimer(time.Duration(try+1) * 500 * time.Millisecond)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return 0, nil, false, ctx.Err()
			}
		default:
			return 0, nil, false, err
		}
	}
}
