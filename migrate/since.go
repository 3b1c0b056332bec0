package migrate

import (
	"context"
	"net/mail"
	"time"

	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
)

// since is the filter of --since: a message dated before it stays at its
// source (left, so it is read again on the next run and still not moved);
// an undated one moves.
type since time.Time

func (s since) Filter(_ context.Context, msg *message.Message) (plugin.Verdict, error) {
	if d, err := mail.ParseDate(msg.Header.Get("Date")); err == nil && d.Before(time.Time(s)) {
		return plugin.Verdict{Action: plugin.ActionLeave, Reason: "dated before --since"}, nil
	}
	return plugin.Verdict{}, nil
}

var _ plugin.Filter = since{}
