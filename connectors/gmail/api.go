package gmail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"
)

// APIError is a reply of the Gmail API other than 2xx, as its JSON error
// body says it (https://developers.google.com/gmail/api/guides/handle-errors).
type APIError struct {
	Op         string // the method: "messages.import", "labels.create", …
	StatusCode int    // the HTTP status
	Status     string // the error's status ("INVALID_ARGUMENT"), when given
	// Reason, Location and LocationType are those of the first entry of
	// the error's "errors", when given ("userRateLimitExceeded";
	// "uploadType", "parameter").
	Reason, Location, LocationType string
	Message                        string
	// RetryAfter is the reply's Retry-After; 0 when it had none.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("gmail %s: %d %s", e.Op, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Reason != "" {
		s += " (" + e.Reason + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Throttling reports whether the API asks to slow down: a 429, or a 403
// whose reason is a rate or quota limit.
func (e *APIError) Throttling() bool {
	if e.StatusCode == http.StatusTooManyRequests {
		return true
	}
	return e.StatusCode == http.StatusForbidden && slices.Contains([]string{"rateLimitExceeded", "userRateLimitExceeded",
		"dailyLimitExceeded", "quotaExceeded", "concurrentLimitExceeded"}, e.Reason)
}

// readAPIError reads a non-2xx reply and closes it.
func readAPIError(op string, resp *http.Response) *APIError {
	defer resp.Body.Close()
	e := &APIError{Op: op, StatusCode: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	var body struct {
		Error struct {
			Message string `json:"message"`
			Status  string `json:"status"`
			Errors  []struct {
				Reason       string `json:"reason"`
				Location     string `json:"location"`
				LocationType string `json:"locationType"`
			} `json:"errors"`
		} `json:"error"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &body) == nil {
		e.Message, e.Status = body.Error.Message, body.Error.Status
		if len(body.Error.Errors) > 0 {
			first := body.Error.Errors[0]
			e.Reason, e.Location, e.LocationType = first.Reason, first.Location, first.LocationType
		}
	}
	if len(e.Message) > 300 {
		e.Message = e.Message[:300] + "…"
	}
	return e
}

// retryAfter reads a Retry-After value: seconds, or an HTTP date (RFC
// 9110 10.2.3); 0 when there is none or it cannot be read.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, 86400)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour)
	}
	return 0
}

// TransportError is a request that got no reply: the connection could
// not be made, broke, or the reply did not come in time. BodySent says
// whether every byte of the request's body had been handed to the
// connection: only then can the API have acted on it.
type TransportError struct {
	Op       string
	BodySent bool
	Err      error
}

func (e *TransportError) Error() string {
	if e.BodySent {
		return fmt.Sprintf("gmail %s: no reply after the request was sent: %v", e.Op, e.Err)
	}
	return fmt.Sprintf("gmail %s: %v", e.Op, e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// stripURL keeps a net/http error's cause and drops the URL it names: a
// resumable session's URI is a capability to upload into the mailbox, and
// does not belong in a log.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", strings.ToLower(ue.Op), ue.Err)
	}
	return err
}

// watched is a request body that says whether it was read to its end,
// and cancels the request when it makes no progress for stall: a
// connection that stops taking bytes would otherwise hold the upload
// until the kernel gives up on it.
type watched struct {
	r     io.Reader
	stall time.Duration

	mu     sync.Mutex
	timer  *time.Timer
	cancel context.CancelFunc
	done   bool
}

func (w *watched) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == io.EOF {
		w.done = true
		if w.timer != nil {
			w.timer.Stop() // from here the transport's reply timeout holds
		}
	} else if w.timer != nil {
		w.timer.Reset(w.stall)
	}
	return n, err
}

func (w *watched) sent() bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.done
}

func (w *watched) start(cancel context.CancelFunc) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cancel = cancel
	w.timer = time.AfterFunc(w.stall, cancel)
}

func (w *watched) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer != nil {
		w.timer.Stop()
	}
}

// request is one API request, made afresh for each try.
type request struct {
	op     string
	method string
	url    string
	header http.Header
	// body makes the body anew (nil: none); size is its length.
	body func() io.Reader
	size int64
	// units is what it costs of the quota.
	units int
}

// do sends req with a bearer token, once its quota units were paced out
// and a slot among max_concurrent was free. A token the API refuses (401)
// is refreshed and the request made once more. It returns a 2xx reply
// open, with the cancel func of its context (call it after the body was
// read); any other reply as an *APIError; no reply as a *TransportError.
func (o *Output) do(ctx context.Context, req request) (*http.Response, context.CancelFunc, error) {
	if err := o.quota.wait(ctx, req.units); err != nil {
		return nil, nil, err
	}
	select {
	case o.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	defer func() { <-o.slots }()
	if wait := o.quiet(); wait > 0 && req.units > 0 {
		// Told to wait while this one waited for its turn.
		return nil, nil, plugin.Throttled(fmt.Errorf("gmail %s: the API asked to be left alone for %s more", req.op, wait.Round(time.Second)), wait)
	}
	for try := 0; ; try++ {
		tok, err := o.tokens.Token(ctx)
		if err != nil {
			// oauth.LoginNeeded says which command logs in again; any
			// other failure to refresh is temporary. Either way the
			// message waits at its source.
			return nil, nil, fmt.Errorf("gmail %s: %w", req.op, err)
		}
		rctx, cancel := context.WithCancel(ctx)
		var body *watched
		var rd io.Reader
		if req.body != nil {
			body = &watched{r: req.body(), stall: o.timeout}
			body.start(cancel)
			rd = body
		}
		hr, err := http.NewRequestWithContext(rctx, req.method, req.url, rd)
		if err != nil {
			cancel()
			return nil, nil, err
		}
		if req.body != nil {
			hr.ContentLength = req.size
			if req.size == 0 {
				hr.Body = http.NoBody
			}
		}
		for k, v := range req.header {
			hr.Header[k] = v
		}
		hr.Header.Set("Authorization", "Bearer "+tok)
		resp, err := o.client.Do(hr)
		body.stopIfSet()
		if err != nil {
			// Given up for a shutdown too: if the body had gone out, Gmail
			// may hold the message, and the next start must look first.
			cancel()
			return nil, nil, &TransportError{Op: req.op, BodySent: body.sent(), Err: stripURL(err)}
		}
		if resp.StatusCode/100 == 2 || resp.StatusCode == http.StatusPermanentRedirect {
			o.throttles.Store(0)
			return resp, cancel, nil
		}
		e := readAPIError(req.op, resp)
		cancel()
		if e.StatusCode == http.StatusUnauthorized && try == 0 {
			// Revoked or cut short before its expiry: a fresh token,
			// once.
			o.log.Info("gmail refused the access token; refreshing it", "op", req.op)
			o.tokens.Invalidate()
			continue
		}
		return nil, nil, e
	}
}

func (w *watched) stopIfSet() {
	if w != nil {
		w.stop()
	}
}

// throttled turns a throttling reply into plugin.Throttled with the wait
// the API asked for, else Google's truncated exponential back-off (1, 2,
// 4 … 64 s, with up to a second of jitter, growing with each throttling
// reply in a row), and keeps every delivery from calling the API before
// that time.
func (o *Output) throttled(e *APIError) error {
	d := e.RetryAfter
	if d <= 0 {
		n := o.throttles.Add(1) - 1
		d = min(time.Second<<min(n, 6), 64*time.Second) + time.Duration(rand.Int64N(int64(time.Second)))
	}
	o.quietMu.Lock()
	if until := time.Now().Add(d); until.After(o.quietUntil) {
		o.quietUntil = until
	}
	o.quietMu.Unlock()
	return plugin.Throttled(e, d)
}

// quiet is how long the API asked to be left alone still.
func (o *Output) quiet() time.Duration {
	o.quietMu.Lock()
	defer o.quietMu.Unlock()
	return time.Until(o.quietUntil)
}

// readJSON decodes a 2xx reply into v and closes it.
func readJSON(resp *http.Response, cancel context.CancelFunc, v any) error {
	defer cancel()
	defer resp.Body.Close()
	return json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(v)
}

// apiURL is the address of path (which starts with "/") with query q.
func (o *Output) apiURL(path string, q url.Values) string {
	u := o.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}
