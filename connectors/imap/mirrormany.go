package imap

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailflow/mailflow/engine/plugin"
)

// SetFlagsMany implements plugin.FlagBatchMirror. The changes whose copy
// APPENDUID named are carried folder by folder on one session: a SELECT,
// one UID SEARCH for the copies still there, and a UID STORE per kind of
// change ("+\Flagged", "-Work"), the STOREs sent together. Carried one by
// one (SetFlags), a change cost a SELECT, a SEARCH and a STORE, each a
// round trip: over 50 ms, 120 changes took most of 15 s. A change whose
// copy is known only by identity, or whose folder was made again since,
// is carried as SetFlags carries it.
func (o *Output) SetFlagsMany(ctx context.Context, changes []plugin.FlagChange) []error {
	errs := make([]error, len(changes))
	if o.KeepFlags != nil && !*o.KeepFlags {
		return errs
	}
	type place struct {
		folder   string
		validity uint32
	}
	groups := map[place][]int{}
	var order []place
	uids := make([]uint32, len(changes))
	var rest []int // carried one by one
	for i, ch := range changes {
		folder, validity, uid, ok := parseWhere(ch.Placement.Where)
		if !ok {
			rest = append(rest, i)
			continue
		}
		pl := place{folder, validity}
		if _, seen := groups[pl]; !seen {
			order = append(order, pl)
		}
		groups[pl] = append(groups[pl], i)
		uids[i] = uid
	}
	// The folders are carried at once, each on a session of its own (as
	// many as the output may open): one after the other, each folder's
	// round trips were waited for in turn.
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, pl := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			again, err := o.storeFolder(ctx, pl.folder, pl.validity, groups[pl], uids, changes, errs)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case again:
				rest = append(rest, groups[pl]...)
			case err != nil:
				for _, i := range groups[pl] {
					if errs[i] == nil {
						errs[i] = err
					}
				}
			}
		}()
	}
	wg.Wait()
	slices.Sort(rest)
	for _, i := range rest {
		errs[i] = o.SetFlags(ctx, changes[i].Placement, changes[i].Added, changes[i].Removed)
	}
	return errs
}

// storeFolder carries the changes at (indexes into changes, whose copies
// have the UIDs uids) in folder, made with UIDVALIDITY validity, setting
// errs of those whose copy is gone; again when the folder is gone or was
// made again, and the copies are to be looked for by identity.
func (o *Output) storeFolder(ctx context.Context, folder string, validity uint32, at []int, uids []uint32, changes []plugin.FlagChange, errs []error) (again bool, err error) {
	err = o.use(ctx, func(c *conn) error {
		want := make([]uint32, len(at))
		for j, i := range at {
			want[j] = uids[i]
		}
		// Which copies are still there is asked with the SELECT
		// (selectThen); the STOREs wait for its UIDVALIDITY.
		var cmd *imapclient.SearchCommand
		data, err := c.selectThen(folder, &goimap.SelectOptions{}, func() { cmd = c.presentCmd(want) })
		there, serr := c.searched(cmd)
		if err != nil && !missing(err) {
			return err
		}
		if err != nil || data.UIDValidity != validity {
			again = true
			return nil
		}
		if serr != nil {
			return serr
		}
		var stores []store
		for _, i := range at {
			if !slices.Contains(there, uids[i]) {
				errs[i] = plugin.ErrNotHeld // someone deleted it there
				continue
			}
			add, rm := withoutRecent(changes[i].Added), withoutRecent(changes[i].Removed)
			k := slices.IndexFunc(stores, func(s store) bool { return slices.Equal(s.add, add) && slices.Equal(s.rm, rm) })
			if k < 0 {
				stores = append(stores, store{add: add, rm: rm})
				k = len(stores) - 1
			}
			stores[k].uids = append(stores[k].uids, uids[i])
		}
		return c.storeAll(stores)
	})
	return again, err
}

// store is one kind of change and the UIDs it is made to.
type store struct {
	add, rm []string
	uids    []uint32
}

// withoutRecent is flags, sorted, without \Recent (a session's, never
// stored).
func withoutRecent(flags []string) []string {
	out := slices.DeleteFunc(slices.Clone(flags), func(f string) bool { return strings.EqualFold(f, `\Recent`) })
	slices.Sort(out)
	return out
}

// storeAll makes the changes of stores in the selected folder: every UID
// STORE goes out before the first answer is read.
func (c *conn) storeAll(stores []store) error {
	defer c.wd.begin()()
	var cmds []interface{ Close() error }
	for _, s := range stores {
		for _, ch := range []struct {
			op    goimap.StoreFlagsOp
			flags []string
		}{{goimap.StoreFlagsAdd, s.add}, {goimap.StoreFlagsDel, s.rm}} {
			if len(ch.flags) == 0 {
				continue
			}
			fl := make([]goimap.Flag, len(ch.flags))
			for i, f := range ch.flags {
				fl[i] = goimap.Flag(f)
			}
			cmds = append(cmds, c.c.Store(uidSet(s.uids), &goimap.StoreFlags{Op: ch.op, Silent: true, Flags: fl}, nil))
		}
	}
	var errs []error
	for _, cmd := range cmds {
		if err := cmd.Close(); err != nil {
			errs = append(errs, fmt.Errorf("imap STORE: %w", err))
		}
	}
	return errors.Join(errs...)
}

var _ plugin.FlagBatchMirror = (*Output)(nil)
