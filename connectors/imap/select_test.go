package imap

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// since, unseen and the size bounds select by SEARCH on the server: the
// other messages are not listed, not fetched, and stay as they are.
func TestSearchSelectsWhatIsFetched(t *testing.T) {
	var msgs []stored
	for i := range 12 {
		var flags []string
		if i%3 == 0 {
			flags = []string{`\Seen`}
		}
		body := strings.Repeat("x", 100*(1+i%4)) // 100, 200, 300, 400 bytes of body
		msgs = append(msgs, stored{folder: "INBOX", flags: flags,
			date: time.Date(2020+i%2*5, 6, 1, 0, 0, 0, 0, time.UTC), // 2020 or 2025
			data: []byte(fmt.Sprintf("Message-ID: <s%02d@x.test>\r\nSubject: %02d\r\n\r\n%s\r\n", i, i, body))})
	}
	sizeOf := func(m stored) int64 { return int64(len(m.data)) }
	cases := []struct {
		name, conf string
		want       func(i int, m stored) bool
	}{
		{"unseen", "unseen = true", func(i int, m stored) bool { return i%3 != 0 }},
		{"since a date", `since = "2024-01-01"`, func(i int, m stored) bool { return i%2 == 1 }},
		{"size range", fmt.Sprintf("min_size = %d\nmax_size = %d", sizeOf(msgs[1]), sizeOf(msgs[2])),
			func(i int, m stored) bool { return i%4 == 1 || i%4 == 2 }},
		{"all of them", "unseen = true\n" + `since = "2024-01-01"`, func(i int, m stored) bool { return i%3 != 0 && i%2 == 1 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr := memServer(t)
			seed(t, login(t, addr, "src"), msgs)
			conf := strings.Replace(imapToIMAP(addr, "delete", ""), `on_settled = "delete"`, "on_settled = \"delete\"\n"+c.conf, 1)
			e := newEngine(t, conf)
			want := 0
			for i, m := range msgs {
				if c.want(i, m) {
					want++
				}
			}
			st, err := e.PollOnce(context.Background(), "old")
			if err != nil || st.Fetched != int64(want) || st.Delivered != int64(want) {
				t.Fatalf("want %d fetched and delivered: %v %v", want, st, err)
			}
			left := dump(t, login(t, addr, "src"))
			if len(left) != len(msgs)-want {
				t.Fatalf("%d left at the source, want %d", len(left), len(msgs)-want)
			}
			for _, m := range left {
				for i, s := range msgs {
					if string(s.data) == string(m.data) && c.want(i, s) {
						t.Fatalf("message %d was selected but is still at the source", i)
					}
				}
			}
		})
	}
}
