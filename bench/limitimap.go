package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// limitIMAP is the IMAP bench's limit tool (-imap-tools ...,limit): what
// this Dovecot allows a copier that does nothing but copy. It lists the
// source's folders and runs conns lanes, each taking folders in turn: a
// lane fetches a folder in one FETCH 1:* (UID FLAGS INTERNALDATE
// BODY.PEEK[]), which the server streams, on its own source session, and
// APPENDs each message into the same folder with the same flags and date on
// its own destination session, never waiting for an APPEND's tagged answer
// before sending the next (they are collected at the end). No ledger, no
// hashing, no parsing, no verification of its own: the bench checks the
// destination folder by folder, as it does every tool's.
//
// go-imap v2 beta.8's client waits for the server's "+" before each literal
// larger than 4 KiB even when the server has LITERAL+, so one session cannot
// pipeline APPENDs of all but the smallest messages: each costs a round
// trip; the lanes overlap conns of those waits (conns is 4 by default, as
// mailflow's --parallel). With the patched copy in third_party/go-imap
// (LITERAL+ honoured for APPEND) the same code pipelines on each session.
//
// BENCH_LIMIT_CPUPROFILE=FILE writes its CPU profile.
//
//	bench limit-imap ADDR SRC_USER DST_USER PASSWORD CONNS
func limitIMAP(args []string) int {
	if len(args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: bench limit-imap ADDR SRC_USER DST_USER PASSWORD CONNS")
		return 2
	}
	conns, err := strconv.Atoi(args[4])
	if err != nil || conns < 1 {
		fmt.Fprintln(os.Stderr, "limit-imap: CONNS must be a number of sessions, 1 or more")
		return 2
	}
	if p := os.Getenv("BENCH_LIMIT_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	if err := limitCopy(args[0], args[1], args[2], args[3], conns); err != nil {
		fmt.Fprintln(os.Stderr, "limit-imap:", err)
		return 1
	}
	return 0
}

// fetched is one message on its way from a fetcher to an appender.
type fetched struct {
	folder string
	flags  []goimap.Flag
	date   time.Time
	body   []byte
}

func imapLogin(addr, user, password string) (*imapclient.Client, error) {
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		return nil, err
	}
	if err := c.Login(user, password).Wait(); err != nil {
		c.Close()
		return nil, fmt.Errorf("login %s: %w", user, err)
	}
	return c, nil
}

func limitCopy(addr, srcUser, dstUser, password string, conns int) error {
	src, err := imapLogin(addr, srcUser, password)
	if err != nil {
		return err
	}
	defer src.Close()
	boxes, err := src.List("", "*", nil).Collect()
	if err != nil {
		return fmt.Errorf("LIST: %w", err)
	}
	var folders []string
	for _, b := range boxes {
		if !hasAttr(b.Attrs, goimap.MailboxAttrNoSelect) {
			folders = append(folders, b.Mailbox)
		}
	}
	sort.Strings(folders) // parents before children

	// The destination's folders first, on the first appender's session.
	dsts := make([]*imapclient.Client, conns)
	for i := range dsts {
		if dsts[i], err = imapLogin(addr, dstUser, password); err != nil {
			return err
		}
		defer dsts[i].Close()
	}
	for _, f := range folders {
		if f == "INBOX" {
			continue
		}
		if err := dsts[0].Create(f, nil).Wait(); err != nil && !isAlreadyExists(err) {
			return fmt.Errorf("CREATE %s: %w", f, err)
		}
	}

	// Lanes: each takes folders from the queue, fetches one on its own
	// source session and APPENDs it on its own destination session. A
	// folder stays on one session: Dovecot opens the mailbox for each
	// APPEND to a folder other than the selected one, so the destination
	// session SELECTs the folder it fills (selectDst) and keeps it open.
	queue := make(chan string, len(folders))
	for _, f := range folders {
		queue <- f
	}
	close(queue)
	var (
		mu    sync.Mutex
		first error
		lanes sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
	}
	for i, dst := range dsts {
		c := src
		if i > 0 {
			if c, err = imapLogin(addr, srcUser, password); err != nil {
				return err
			}
			defer c.Close()
		}
		msgs := make(chan fetched, 8)
		lanes.Add(2)
		go func() {
			defer lanes.Done()
			defer close(msgs)
			for f := range queue {
				if err := fetchFolder(c, f, msgs); err != nil {
					fail(err)
					return
				}
			}
		}()
		go func() {
			defer lanes.Done()
			fail(appendAll(dst, msgs))
		}()
	}
	lanes.Wait()
	if first != nil {
		return first
	}
	for _, c := range dsts {
		c.Logout().Wait()
	}
	return nil
}

// fetchFolder streams every message of folder into msgs.
func fetchFolder(c *imapclient.Client, folder string, msgs chan<- fetched) error {
	sel, err := c.Select(folder, &goimap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return fmt.Errorf("EXAMINE %s: %w", folder, err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	cmd := c.Fetch(goimap.SeqSet{goimap.SeqRange{Start: 1, Stop: 0}}, &goimap.FetchOptions{
		UID: true, Flags: true, InternalDate: true,
		BodySection: []*goimap.FetchItemBodySection{{Peek: true}},
	})
	for {
		m := cmd.Next()
		if m == nil {
			break
		}
		f := fetched{folder: folder}
		for {
			item := m.Next()
			if item == nil {
				break
			}
			switch item := item.(type) {
			case imapclient.FetchItemDataFlags:
				for _, fl := range item.Flags {
					if !strings.EqualFold(string(fl), `\Recent`) {
						f.flags = append(f.flags, fl)
					}
				}
			case imapclient.FetchItemDataInternalDate:
				f.date = item.Time
			case imapclient.FetchItemDataBodySection:
				b := make([]byte, 0, item.Literal.Size())
				w := byteWriter{&b}
				if _, err := io.Copy(w, item.Literal); err != nil {
					cmd.Close()
					return fmt.Errorf("FETCH %s: %w", folder, err)
				}
				f.body = b
			}
		}
		msgs <- f
	}
	if err := cmd.Close(); err != nil {
		return fmt.Errorf("FETCH %s: %w", folder, err)
	}
	return nil
}

// appendAll APPENDs each message it is handed, waiting only for the
// server's "+" where the client needs it, and for every answer at the end.
// Before the first message of a folder it SELECTs the folder (selectDst).
func appendAll(c *imapclient.Client, msgs <-chan fetched) error {
	var sent []*imapclient.AppendCommand
	var err error
	selected := ""
	for m := range msgs {
		if err != nil {
			continue // drain, so that the fetcher ends
		}
		if selectDst && m.folder != selected {
			if _, err = c.Select(m.folder, nil).Wait(); err != nil {
				err = fmt.Errorf("SELECT %s: %w", m.folder, err)
				continue
			}
			selected = m.folder
		}
		cmd := c.Append(m.folder, int64(len(m.body)), &goimap.AppendOptions{Flags: m.flags, Time: m.date})
		if _, err = cmd.Write(m.body); err == nil {
			err = cmd.Close()
		}
		if err != nil {
			err = fmt.Errorf("APPEND %s: %w", m.folder, err)
		}
		sent = append(sent, cmd)
	}
	for _, cmd := range sent {
		if _, werr := cmd.Wait(); werr != nil && err == nil {
			err = fmt.Errorf("APPEND: %w", werr)
		}
	}
	return err
}

// selectDst: see limitCopy. BENCH_LIMIT_SELECT=0 turns it off, to measure
// what it is worth.
var selectDst = os.Getenv("BENCH_LIMIT_SELECT") != "0"

type byteWriter struct{ b *[]byte }

func (w byteWriter) Write(p []byte) (int, error) {
	*w.b = append(*w.b, p...)
	return len(p), nil
}

func hasAttr(attrs []goimap.MailboxAttr, a goimap.MailboxAttr) bool {
	for _, x := range attrs {
		if x == a {
			return true
		}
	}
	return false
}

// isAlreadyExists is a NO to CREATE for a folder that is there (Dovecot
// creates parents, and INBOX is always there).
func isAlreadyExists(err error) bool {
	var ie *goimap.Error
	return errors.As(err, &ie) && ie.Code == goimap.ResponseCodeAlreadyExists
}
