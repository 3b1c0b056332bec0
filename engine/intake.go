package engine

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
)

// intake takes the messages a session fetches into the engine, one call of
// take per message (Session.Fetch's each): it holds room for the message in
// memory_budget (or spools it), reads it, checks its size against what the
// source announced, and hands it to a goroutine of its own to settle, at
// most max_in_flight at once. wait returns when every handed-over message
// is settled.
type intake struct {
	p   *poll
	ctx context.Context // the poll's: cancelled, nothing more is taken in
	wg  sync.WaitGroup
}

// take is Session.Fetch's each. A message that could not be read, or that
// is over max_message_size, stays at its source and take goes on; an error
// stops the fetch (the session is out of step, or the poll is stopping).
func (in *intake) take(it plugin.Item, r io.Reader, fetchErr error) error {
	p := in.p
	if fetchErr != nil {
		p.done(MessageEvent{Folder: it.Folder, Outcome: Deferred})
		p.log.Warn("could not fetch the message; it stays at the source", "id", it.ID, "err", fetchErr)
		return nil
	}
	opts, held, err := in.reserve(it)
	if err != nil {
		return err
	}
	msg, err := message.Read(r, message.Source{Input: p.ic.Name, ID: it.ID}, opts)
	if msg == nil {
		p.e.mem.give(held)
	}
	if errors.Is(err, message.ErrTooLarge) {
		p.log.Warn("message is over max_message_size; it stays at the source", "id", it.ID, "max", opts.MaxSize)
		return nil
	}
	if err != nil {
		return err
	}
	msg.Folder, msg.FolderRole, msg.Flags, msg.InternalDate = it.Folder, it.FolderRole, it.Flags, it.Date
	if it.Received != nil {
		msg.Received, msg.Envelope = it.Received, it.Received.Envelope()
	}
	release := func() { msg.Close(); p.e.mem.give(held) }
	p.fetched(it, msg.OriginalSize())
	// The reader is the session's only while each runs: ask it now. What it
	// says outweighs a size that happens to agree (an empty message a
	// server sent as one blank line).
	var why error
	if m, ok := r.(plugin.Misreader); ok {
		why = m.Misread()
	}
	if why != nil || !SizeAgrees(it.Size, msg) {
		p.mismatch(it, msg, why)
		release()
		return nil
	}
	select {
	case p.e.sem <- struct{}{}:
	case <-in.ctx.Done():
		release()
		return in.ctx.Err()
	}
	in.wg.Add(1)
	go func() {
		defer func() { <-p.e.sem; in.wg.Done() }()
		defer release()
		p.handle(in.ctx, it, msg)
	}()
	return nil
}

// reserve decides where a message of the item's announced size is read
// to, and takes its room in memory_budget: in memory if it is no larger
// than spill_over, once the budget has room for it; spooled to disk if it
// is larger, or of unknown size (which reserves spill_over) when there is
// no room at once. held is what was taken from the budget, to give back
// when the message is done.
func (in *intake) reserve(it plugin.Item) (opts message.SpoolOptions, held int64, err error) {
	p := in.p
	opts = p.spool()
	opts.SizeHint, opts.Pool = it.Size, p.e.buffers
	held = it.Size
	switch {
	case held > opts.InMemory:
		held, opts.InMemory = 0, spoolFirst
	case held > 0:
		// It is read into a chunk of the pool at least: that is what it
		// holds (no more than the budget, which could never give it).
		held = min(max(held, message.ChunkSize), opts.InMemory)
		if !p.e.mem.wait(in.ctx, held) {
			return opts, 0, in.ctx.Err()
		}
	case !p.e.mem.take(opts.InMemory):
		held, opts.InMemory = 0, spoolFirst
	default:
		held = opts.InMemory
	}
	return opts, held, nil
}

// wait returns once every message taken in is settled, and gives the
// memory of the chunks they were held in back to the system: the peak of
// a poll is not kept through the verification, the commit and the wait
// for the next poll (chunks lent to another input's poll meanwhile stay
// lent).
func (in *intake) wait() {
	in.wg.Wait()
	in.p.e.buffers.Trim()
}
