package migrate

import (
	"context"
	"fmt"
	"log/slog"
	"mime"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-message/charset"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/migrate/survey"
	"github.com/mailflow/mailflow/plugins"
)

// Planned is one message of a dry run: what a run would do with it.
type Planned struct {
	survey.Item
	Date          time.Time // from its Date header; zero when it has none
	From, Subject string    // decoded
	// Stays says why it would stay at the source ("too large", "dated
	// before --since"); empty when it would move.
	Stays string
}

// DryRun lists what a run of the plan would move, reading only headers
// (where the source can peek at them) and changing nothing, not even the
// record of what was moved. Messages moved by an earlier run are not
// listed; totals counts them.
func DryRun(ctx context.Context, p Plan, log *slog.Logger) (list []Planned, totals Totals, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	from, to, err := p.check()
	if err != nil {
		return nil, totals, err
	}
	state, err := p.stateDir()
	if err != nil {
		return nil, totals, err
	}
	cfg, err := p.buildConfig(from, to, state, false)
	if err != nil {
		return nil, totals, err
	}
	e, err := engine.Open(cfg, plugins.Default, log)
	if err != nil {
		return nil, totals, err
	}
	defer e.Close()
	for _, ic := range cfg.Inputs {
		items, err := survey.Survey(ctx, e, ic.Name, survey.PeekUnsettled)
		if err != nil {
			return list, totals, fmt.Errorf("%s: %w", ic.Name, err)
		}
		totals.add(items)
		for _, it := range items {
			if it.Settled {
				continue
			}
			list = append(list, plan(it, p.Since))
		}
	}
	return list, totals, nil
}

var headerDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

func plan(it survey.Item, since time.Time) Planned {
	pl := Planned{Item: it}
	if it.TooLarge {
		pl.Stays = "too large"
	}
	m, err := mail.ReadMessage(strings.NewReader(string(it.Header) + "\r\n"))
	if err != nil {
		return pl
	}
	if t, err := m.Header.Date(); err == nil {
		pl.Date = t
		if !since.IsZero() && t.Before(since) && pl.Stays == "" {
			pl.Stays = "dated before --since"
		}
	}
	pl.From, _ = headerDecoder.DecodeHeader(m.Header.Get("From"))
	pl.Subject, _ = headerDecoder.DecodeHeader(m.Header.Get("Subject"))
	return pl
}
