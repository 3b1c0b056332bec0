package imapclient_test

// mailflow: tests of the X-GM-EXT-1 fetch items (X-GM-MSGID, X-GM-LABELS),
// between this client and this server, and of the client against the
// forms Gmail writes.

import (
	"bufio"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// gmailSession answers every FETCH with one message's UID, X-GM-MSGID and
// X-GM-LABELS, as far as asked.
type gmailSession struct {
	*imapmemserver.UserSession
	labels []string
}

func (s gmailSession) Fetch(w *imapserver.FetchWriter, _ imap.NumSet, opts *imap.FetchOptions) error {
	rw := w.CreateMessage(1)
	rw.WriteUID(7)
	if opts.GmailMsgID {
		rw.WriteGmailMsgID(18446744073709551615)
	}
	if opts.GmailLabels {
		rw.WriteGmailLabels(s.labels)
	}
	return rw.Close()
}

func TestGmailFetchItems(t *testing.T) {
	labels := []string{`\Inbox`, `\Important`, "Work/2024", "Résumés", "a b", `quote"d`}
	mem := imapmemserver.New()
	user := imapmemserver.NewUser(testUsername, testPassword)
	user.Create("INBOX", nil)
	mem.AddUser(user)
	server := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return gmailSession{imapmemserver.NewUserSession(user), labels}, nil, nil
		},
		InsecureAuth: true,
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, "X-GM-EXT-1": {}},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go server.Serve(ln)
	defer server.Close()
	c, err := imapclient.DialInsecure(ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(testUsername, testPassword).Wait(); err != nil {
		t.Fatal(err)
	}
	if !c.Caps().Has("X-GM-EXT-1") {
		t.Fatalf("capabilities %v: no X-GM-EXT-1", c.Caps())
	}
	for _, utf8 := range []bool{false, true} {
		if utf8 {
			if _, err := c.Enable(imap.CapUTF8Accept).Wait(); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{UID: true, GmailMsgID: true, GmailLabels: true}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 1 || msgs[0].UID != 7 || msgs[0].GmailMsgID != 18446744073709551615 || !slices.Equal(msgs[0].GmailLabels, labels) {
			t.Fatalf("UTF8=ACCEPT %v: fetched %+v", utf8, msgs[0])
		}
	}
}

// Gmail's own documentation shows its labels bare (\Inbox), its servers
// send them quoted ("\\Inbox"); names of one's own come in modified UTF-7.
func TestGmailLabelsAsGmailWritesThem(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		server.Write([]byte("* OK Gimap ready\r\n"))
		r := bufio.NewReader(server)
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		tag, _, _ := strings.Cut(line, " ")
		server.Write([]byte(`* 1 FETCH (X-GM-MSGID 1278455344230334865 X-GM-LABELS (\Inbox "\\Sent" Work R&AOk-sum&AOk-s "a b" "x&y") UID 5)` + "\r\n"))
		server.Write([]byte(`* 2 FETCH (X-GM-LABELS () UID 6 X-GM-MSGID 2)` + "\r\n"))
		server.Write([]byte(tag + " OK Success\r\n"))
	}()
	c := imapclient.New(client, nil)
	defer c.Close()
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{UID: true, GmailMsgID: true, GmailLabels: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`\Inbox`, `\Sent`, "Work", "Résumés", "a b", "x&y"}
	if len(msgs) != 2 || msgs[0].GmailMsgID != 1278455344230334865 || !slices.Equal(msgs[0].GmailLabels, want) ||
		msgs[1].GmailMsgID != 2 || len(msgs[1].GmailLabels) != 0 || msgs[1].UID != 6 {
		t.Fatalf("fetched %+v %+v", msgs[0], msgs[1])
	}
}
