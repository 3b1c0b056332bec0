package imap

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"github.com/mailflow/mailflow/engine/plugin"
)

// A server that wants less from a client says so in a response code
// (RFC 5530: [UNAVAILABLE], [OVERQUOTA]; Yahoo's and others' [THROTTLED])
// or, Microsoft 365, in the text: "Request is throttled. Suggested Backoff
// Time: 92415 milliseconds", on a NO, a BAD, or the BYE that ends the
// session. Such an answer is about now, not about the message: it is
// temporary, marked with how long to wait (plugin.Throttled) so that the
// engine waits that long before it tries that output, or polls that input,
// again.

// Waits where the server names none: [OVERQUOTA] is a mailbox that is
// full, which someone must empty; the others pass in minutes.
const (
	throttleWait  = time.Minute
	overQuotaWait = 15 * time.Minute
)

// backoffText is Microsoft 365's way of saying how long to wait.
var backoffText = regexp.MustCompile(`(?i)suggested\s+backoff\s+time:\s*(\d+)\s*milliseconds`)

// serverWait reports whether err is a server's answer asking to wait, and
// how long.
func serverWait(err error) (time.Duration, bool) {
	var ie *goimap.Error
	if !errors.As(err, &ie) {
		return 0, false
	}
	if m := backoffText.FindStringSubmatch(ie.Text); m != nil {
		if ms, err := strconv.ParseInt(m[1], 10, 64); err == nil {
			return time.Duration(ms) * time.Millisecond, true
		}
	}
	switch goimap.ResponseCode(strings.ToUpper(string(ie.Code))) {
	case "THROTTLED", goimap.ResponseCodeUnavailable:
		return throttleWait, true
	case goimap.ResponseCodeOverQuota:
		return overQuotaWait, true
	}
	return 0, false
}

// throttled marks err plugin.Throttled when the server asked to wait;
// else it returns err as it is.
func throttled(err error) error {
	if d, ok := serverWait(err); ok {
		return plugin.Throttled(err, d)
	}
	return err
}
