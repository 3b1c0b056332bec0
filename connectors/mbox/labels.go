package mbox

import (
	"bytes"
	"fmt"
	"mime"
	"slices"
	"strconv"
	"strings"

	"github.com/mailflow/mailflow/connectors/internal/labels"
)

// labelMode is what the input makes of Takeout's X-Gmail-Labels.
type labelMode int

const (
	labelsFirst    labelMode = iota // the first place label is the folder
	labelsCopies                    // a copy per place label
	labelsKeywords                  // the folder is Gmail's view; labels are keywords
	labelsNone                      // not read
)

func parseLabelMode(s string) (labelMode, error) {
	switch s {
	case "", "first":
		return labelsFirst, nil
	case "copies", "folders": // "folders": the word a Gmail IMAP source takes (--labels)
		return labelsCopies, nil
	case "keywords":
		return labelsKeywords, nil
	case "none":
		return labelsNone, nil
	}
	return 0, fmt.Errorf(`labels must be "first", "copies" (or "folders"), "keywords" or "none", not %q`, s)
}

// place is a folder a message goes to.
type place struct {
	folder, role string
	// copy names a copy beyond the first ("copies"): its id is the
	// message's with "/" and its folder added, so that the first copy
	// keeps the message's own id whatever the setting, and switching from
	// "first" to "copies" adds the other copies without a second first.
	copy string
}

// marks are what a message's header says of where it goes.
type marks struct {
	skip   string // why the message is not imported ("chat", "spam", "trash"); "" to import it
	places []place
	flags  []string
}

// Gmail's locations: the system labels that are places.
var (
	inboxPlace   = place{folder: "INBOX"}
	sentPlace    = place{folder: "Sent", role: `\Sent`}
	draftsPlace  = place{folder: "Drafts", role: `\Drafts`}
	spamPlace    = place{folder: "Spam", role: `\Junk`}
	trashPlace   = place{folder: "Trash", role: `\Trash`}
	archivePlace = place{folder: "Archive", role: `\Archive`}
)

// labeller makes marks from header blocks, sharing the strings and flag
// lists that many messages have in common (a Takeout of a million messages
// has a few hundred labels).
type labeller struct {
	mode        labelMode
	spamTrash   bool
	folder      string // for a message without labels
	strs        map[string]string
	flagSets    map[string][]string
	byLabels    map[string]marks // by the raw X-Gmail-Labels: a Takeout repeats a few hundred
	chats, junk int              // skipped, for the log
}

// maxCachedLabels bounds byLabels, for a file whose every message has
// labels of its own.
const maxCachedLabels = 10000

func (l *labeller) intern(s string) string {
	if v, ok := l.strs[s]; ok {
		return v
	}
	if l.strs == nil {
		l.strs = map[string]string{}
	}
	l.strs[s] = s
	return s
}

func (l *labeller) internFlags(f []string) []string {
	if len(f) == 0 {
		return nil
	}
	key := strings.Join(f, " ")
	if v, ok := l.flagSets[key]; ok {
		return v
	}
	if l.flagSets == nil {
		l.flagSets = map[string][]string{}
	}
	f = append([]string(nil), f...)
	for i := range f {
		f[i] = l.intern(f[i])
	}
	l.flagSets[key] = f
	return f
}

// marks reads the header block hdr.
func (l *labeller) marks(hdr []byte) marks {
	raw, ok := fieldValue(hdr, "X-Gmail-Labels")
	if !ok || l.mode == labelsNone {
		return marks{places: []place{{folder: l.folder}}, flags: l.internFlags(statusFlags(hdr))}
	}
	m, ok := l.byLabels[raw]
	if !ok {
		m = l.labels(raw)
		if l.byLabels == nil {
			l.byLabels = map[string]marks{}
		}
		if len(l.byLabels) < maxCachedLabels {
			l.byLabels[raw] = m
		}
	}
	switch m.skip {
	case "":
	case "chat":
		l.chats++
	default:
		l.junk++
	}
	return m
}

// labels makes the marks of a message with X-Gmail-Labels raw.
func (l *labeller) labels(raw string) marks {
	var m marks
	var flags []string
	addFlag := func(f string) {
		for _, have := range flags {
			if have == f {
				return
			}
		}
		flags = append(flags, f)
	}
	var (
		places   []place // in the order of the labels
		keywords []string
		location *place // Gmail's view of it, for "keywords"
		unread   bool
		bin      *place // Spam or Trash: where it is, whatever else it has
	)
	for _, label := range splitLabels(raw) {
		switch lower := strings.ToLower(label); {
		case lower == "chat":
			m.skip = "chat"
		case lower == "spam":
			bin = &spamPlace
		case lower == "trash":
			if bin == nil {
				bin = &trashPlace
			}
		case lower == "inbox":
			places = append(places, inboxPlace)
			location = orPlace(location, &inboxPlace)
		case lower == "sent":
			places = append(places, sentPlace)
			location = orPlace(location, &sentPlace)
		case lower == "drafts" || lower == "draft":
			places = append(places, draftsPlace)
			location = orPlace(location, &draftsPlace)
			addFlag(`\Draft`)
		case lower == "archived":
			// Not in the inbox: where it goes when no other label places it.
		case lower == "unread":
			unread = true
		case lower == "starred":
			addFlag(`\Flagged`)
		case lower == "important":
			addFlag("$Important")
		case lower == "opened":
		case strings.HasPrefix(lower, "category "):
			if k := labels.Keyword(label); k != "" {
				addFlag(k)
			}
		case strings.HasPrefix(lower, "imap_"):
			// A keyword an IMAP client set on the message at Gmail.
			if k := labels.Keyword(label[len("imap_"):]); k != "" {
				addFlag(k)
			}
		default:
			places = append(places, place{folder: label})
			if k := labels.Keyword(label); k != "" {
				keywords = append(keywords, k)
			}
		}
	}
	if m.skip == "" && bin != nil {
		m.skip = strings.ToLower(bin.folder)
		if l.spamTrash {
			m.skip, places, location = "", []place{*bin}, bin
		}
	}
	if m.skip != "" {
		return m
	}
	if !unread {
		flags = append([]string{`\Seen`}, flags...)
	}
	if len(places) == 0 {
		// In All Mail only: archived, or never in the inbox.
		places = append(places, archivePlace)
	}
	switch l.mode {
	case labelsFirst:
		m.places = places[:1]
	case labelsCopies:
		for _, p := range places {
			if !slices.ContainsFunc(m.places, func(q place) bool { return q.folder == p.folder }) {
				m.places = append(m.places, p)
			}
		}
	case labelsKeywords:
		if location == nil {
			location = &archivePlace
		}
		m.places = []place{*location}
		for _, k := range keywords {
			addFlag(k)
		}
	}
	for i := range m.places {
		m.places[i].folder = l.intern(m.places[i].folder)
		if i > 0 {
			m.places[i].copy = m.places[i].folder
		}
	}
	m.flags = l.internFlags(flags)
	return m
}

func orPlace(have, p *place) *place {
	if have != nil {
		return have
	}
	return p
}

// splitLabels splits X-Gmail-Labels, which Takeout writes as one line of
// CSV ("Inbox,Important,\"a, b\""), each label perhaps an RFC 2047
// encoded-word, into labels.
func splitLabels(v string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	flush := func() {
		s := strings.TrimSpace(cur.String())
		cur.Reset()
		if strings.Contains(s, "=?") {
			if d, err := labelDecoder.DecodeHeader(s); err == nil {
				s = d
			}
		}
		if s != "" {
			out = append(out, s)
		}
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '"' && quoted && i+1 < len(v) && v[i+1] == '"':
			cur.WriteByte('"')
			i++
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			flush()
		default:
			cur.WriteByte(c)
		}
	}
	flush()
	return out
}

var labelDecoder = &mime.WordDecoder{}

// statusFlags reads the flags a mail reader kept in the header: Status
// and X-Status (mutt, pine, elm: R read, A answered, F flagged, T draft)
// and X-Mozilla-Status (Thunderbird: a hex mask). A message marked
// deleted but not yet expunged is not marked so here: it is imported as
// it is.
func statusFlags(hdr []byte) []string {
	var flags []string
	add := func(f string) {
		for _, have := range flags {
			if have == f {
				return
			}
		}
		flags = append(flags, f)
	}
	if v, ok := fieldValue(hdr, "Status"); ok && strings.ContainsRune(v, 'R') {
		add(`\Seen`)
	}
	if v, ok := fieldValue(hdr, "X-Status"); ok {
		for _, c := range v {
			switch c {
			case 'A':
				add(`\Answered`)
			case 'F':
				add(`\Flagged`)
			case 'T':
				add(`\Draft`)
			}
		}
	}
	if v, ok := fieldValue(hdr, "X-Mozilla-Status"); ok {
		if mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 32); err == nil {
			for _, b := range []struct {
				bit  uint64
				flag string
			}{{0x1, `\Seen`}, {0x2, `\Answered`}, {0x4, `\Flagged`}, {0x1000, "$Forwarded"}} {
				if mask&b.bit != 0 {
					add(b.flag)
				}
			}
		}
	}
	return flags
}

// fieldValue is the unfolded value of the first field called name in the
// header block hdr.
func fieldValue(hdr []byte, name string) (string, bool) {
	v, _, ok := field(hdr, name)
	return v, ok
}

// field is fieldValue, and whether the value was folded over several
// lines.
func field(hdr []byte, name string) (v string, folded, ok bool) {
	for len(hdr) > 0 {
		line := hdr
		if i := bytes.IndexByte(hdr, '\n'); i >= 0 {
			line, hdr = hdr[:i+1], hdr[i+1:]
		} else {
			hdr = nil
		}
		if len(line) <= len(name) || line[len(name)] != ':' || !bytes.EqualFold(line[:len(name)], []byte(name)) {
			continue
		}
		v := strings.TrimSpace(string(line[len(name)+1:]))
		for len(hdr) > 0 && (hdr[0] == ' ' || hdr[0] == '\t') {
			next := hdr
			if i := bytes.IndexByte(hdr, '\n'); i >= 0 {
				next, hdr = hdr[:i+1], hdr[i+1:]
			} else {
				hdr = nil
			}
			v += " " + strings.TrimSpace(string(next))
			folded = true
		}
		return v, folded, true
	}
	return "", false, false
}
