package smtpd

import (
	"context"
	"io"

	"github.com/mailflow/mailflow/engine/plugin"
)

// The engine's side: the spool read as a source, one poll at a time. The
// engine wakes at once when a message is spooled (WaitForMail), so a
// message is in the pipeline milliseconds after its 250; schedule only
// says how often messages that could not be delivered are tried again.

// Open implements plugin.Input. The first one starts the listener.
func (in *Input) Open(ctx context.Context) (plugin.Session, error) {
	if err := in.start(); err != nil {
		return nil, err
	}
	in.mu.Lock()
	sp := in.spool
	in.mu.Unlock()
	return &source{in: in, spool: sp}, nil
}

// WaitForMail implements plugin.MailWaiter: it returns when a message was
// spooled since it last returned.
func (in *Input) WaitForMail(ctx context.Context) error {
	in.mu.Lock()
	sp := in.spool
	in.mu.Unlock()
	if sp == nil {
		return nil // not started: the poll that starts it is due
	}
	select {
	case <-sp.notify:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// source is one poll of the spool.
type source struct {
	in    *Input
	spool *spool
}

// List implements plugin.Session. Spool ids are never given twice, and a
// commit removes the message.
func (s *source) List(ctx context.Context) (plugin.Listing, error) {
	return plugin.Listing{Scheme: "spool", Stable: true, Unique: true, Items: s.spool.list()}, nil
}

// Fetch implements plugin.Session.
func (s *source) Fetch(ctx context.Context, items []plugin.Item, each func(plugin.Item, io.Reader, error) error) error {
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		f, err := s.spool.open(it.Ref.(*entry))
		if err != nil {
			if err := each(it, nil, err); err != nil {
				return err
			}
			continue
		}
		err = each(it, f, nil)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// Commit implements plugin.Session: the settled messages leave the spool.
func (s *source) Commit(ctx context.Context, items []plugin.Item) ([]plugin.Item, error) {
	ens := make([]*entry, len(items))
	byEntry := map[*entry]plugin.Item{}
	for i, it := range items {
		ens[i] = it.Ref.(*entry)
		byEntry[ens[i]] = it
	}
	var failed []plugin.Item
	for _, en := range s.spool.remove(ens) {
		failed = append(failed, byEntry[en])
	}
	return failed, nil
}

// Close implements plugin.Session.
func (s *source) Close(ctx context.Context) error { return nil }

// Answer implements plugin.Answerer: a client waiting for its message's
// outcome (answer = "after_delivery") is told it (answer.go).
func (s *source) Answer(it plugin.Item, a plugin.Answer) bool {
	return s.in.answer(s.spool, it.Ref.(*entry), a)
}

var (
	_ plugin.Session  = (*source)(nil)
	_ plugin.Answerer = (*source)(nil)
)
