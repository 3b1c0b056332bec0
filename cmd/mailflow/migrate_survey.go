package main

import (
	"fmt"
	"io"
	"mime"
	"net/mail"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/emersion/go-message/charset"

	"github.com/mailflow/mailflow/engine"
)

// survey sums up what the inputs of a migration hold before it runs.
type survey struct {
	todo, done, tooLarge int
	todoBytes            int64
	stay                 counted // dated before --since (dry run only)
	// folders: per source folder ("" for a source without folders), what
	// is to move and what moved on an earlier run.
	folders map[string]*folderCount
}

type folderCount struct {
	todo, done counted
}

type counted struct {
	n     int
	bytes int64
}

func (c counted) plus(o counted) counted { return counted{c.n + o.n, c.bytes + o.bytes} }

func (s *survey) add(items []engine.SurveyItem) {
	if s.folders == nil {
		s.folders = map[string]*folderCount{}
	}
	for _, it := range items {
		fc := s.folders[it.Folder]
		if fc == nil {
			fc = &folderCount{}
			s.folders[it.Folder] = fc
		}
		switch {
		case it.Settled:
			s.done++
			fc.done = fc.done.plus(counted{1, it.Size})
		case it.TooLarge:
			s.tooLarge++
		default:
			s.todo++
			s.todoBytes += it.Size
			fc.todo = fc.todo.plus(counted{1, it.Size})
		}
	}
}

// folderNames are the surveyed folders in order.
func (s *survey) folderNames() []string {
	names := make([]string, 0, len(s.folders))
	for f := range s.folders {
		names = append(names, f)
	}
	sort.Strings(names)
	return names
}

// printFolders writes what would move, folder by folder (for a source
// with folders).
func (s *survey) printFolders(w io.Writer) {
	if len(s.folders) < 2 && s.folders[""] != nil {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "FOLDER\tTO MOVE\tSIZE\tMOVED EARLIER\t")
	for _, f := range s.folderNames() {
		fc := s.folders[f]
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t\n", f, fc.todo.n, humanBytes(fc.todo.bytes), fc.done.n)
	}
	tw.Flush()
}

var headerDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// dryRun lists the messages that would move; it returns those that stay
// because they are dated before since.
func dryRun(w io.Writer, items []engine.SurveyItem, since time.Time) (stay counted) {
	fmt.Fprintf(w, "%-6s %10s  %-16s  %-16s  %-28s  %s\n", "#", "SIZE", "DATE", "FOLDER", "FROM", "SUBJECT")
	for i, it := range items {
		note := ""
		switch {
		case it.Settled:
			continue
		case it.TooLarge:
			note = "  [too large: stays]"
		}
		var date, from, subject string
		if m, err := mail.ReadMessage(strings.NewReader(string(it.Header) + "\r\n")); err == nil {
			if t, err := m.Header.Date(); err == nil {
				date = t.UTC().Format("2006-01-02 15:04")
				if !since.IsZero() && t.Before(since) && !it.TooLarge {
					note = "  [before --since: stays]"
					stay = stay.plus(counted{1, it.Size})
				}
			}
			from, _ = headerDecoder.DecodeHeader(m.Header.Get("From"))
			subject, _ = headerDecoder.DecodeHeader(m.Header.Get("Subject"))
		}
		fmt.Fprintf(w, "%-6d %10d  %-16s  %-16s  %-28s  %s%s\n", i+1, it.Size, date, clip(it.Folder, 16), clip(from, 28), clip(subject, 50), note)
	}
	return stay
}

func clip(s string, n int) string {
	s = oneLine(s)
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
