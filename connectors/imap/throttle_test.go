package imap

import (
	"errors"
	"fmt"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
)

func TestServerWait(t *testing.T) {
	no := func(code goimap.ResponseCode, text string) error {
		return fmt.Errorf("imap APPEND: %w", &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: code, Text: text})
	}
	cases := []struct {
		err  error
		wait time.Duration
		ok   bool
	}{
		{no("THROTTLED", "slow down"), throttleWait, true},
		{no("throttled", "slow down"), throttleWait, true},
		{no(goimap.ResponseCodeUnavailable, "maintenance"), throttleWait, true},
		{no(goimap.ResponseCodeOverQuota, "mailbox full"), overQuotaWait, true},
		{no("", "Request is throttled. Suggested Backoff Time: 92415 milliseconds"), 92415 * time.Millisecond, true},
		{no(goimap.ResponseCodeUnavailable, "Suggested Backoff Time: 300 milliseconds"), 300 * time.Millisecond, true},
		{no(goimap.ResponseCodeTryCreate, "no such folder"), 0, false},
		{no("", "cannot store"), 0, false},
		{errors.New("connection reset"), 0, false},
	}
	for _, c := range cases {
		if d, ok := serverWait(c.err); d != c.wait || ok != c.ok {
			t.Errorf("%v: %v %v, want %v %v", c.err, d, ok, c.wait, c.ok)
		}
	}
}
