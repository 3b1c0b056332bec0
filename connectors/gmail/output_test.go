package gmail_test

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailflow/mailflow/connectors/gmail"
	"github.com/mailflow/mailflow/connectors/gmail/gmailtest"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
)

// Each message is imported once, by multipart upload, dated by its Date
// field, with label ids for the config's labels (created once, parents
// first), INBOX, UNREAD unless the source had it \Seen, STARRED if
// \Flagged, and the labels a script set in X-Mailflow-Labels, which is
// gone from what Gmail holds. The same field arriving from the source is
// ignored and removed. labels.list is read once.
func TestImportsOnceWithLabelsAndDates(t *testing.T) {
	r := newRig(t, rigOptions{configure: func(o *gmail.Output) { o.Labels = []string{"Imported", "Old/2023"} }})
	type want struct {
		labels []string
		id     string
	}
	cases := []struct {
		msg  *message.Message
		want want
	}{
		{newMsg(mailN(1, "", 10)), want{labels: []string{"Imported", "Old/2023", "INBOX", "UNREAD"}}},
		{newMsg(mailN(2, "", 10), `\Seen`), want{labels: []string{"Imported", "Old/2023", "INBOX"}}},
		{newMsg(mailN(3, "", 10), `\Flagged`, `\Seen`), want{labels: []string{"Imported", "Old/2023", "INBOX", "STARRED"}}},
		// A script set the field: its labels are the message's.
		{func() *message.Message {
			m := newMsg(mailN(4, "", 10))
			m.Header.Set("X-Mailflow-Labels", "Work, Receipts,Work")
			m.MarkHeaderChanged()
			return m
		}(), want{labels: []string{"Imported", "Old/2023", "INBOX", "UNREAD", "Work", "Receipts"}}},
		// The source's own field labels nothing, and goes.
		{newMsg(mailN(5, "X-Mailflow-Labels: TRASH\r\n", 10)), want{labels: []string{"Imported", "Old/2023", "INBOX", "UNREAD"}}},
		// The source's field, and a script's added on top: the script's only.
		{func() *message.Message {
			m := newMsg(mailN(6, "X-Mailflow-Labels: TRASH\r\n", 10))
			m.Header.Add("X-Mailflow-Labels", "Work")
			m.MarkHeaderChanged()
			return m
		}(), want{labels: []string{"Imported", "Old/2023", "INBOX", "UNREAD", "Work"}}},
	}
	for i, c := range cases {
		placed, err := r.deliver(t, c.msg, plugin.Delivery{})
		if err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
		cases[i].want.id = strings.TrimPrefix(placed, "gmail:")
		if !strings.HasPrefix(placed, "gmail:") {
			t.Fatalf("message %d placed at %q", i+1, placed)
		}
	}
	stored := r.fake.Messages()
	if len(stored) != len(cases) {
		t.Fatalf("%d messages in Gmail, want %d", len(stored), len(cases))
	}
	for i, m := range stored {
		w := cases[i].want
		if m.ID != w.id {
			t.Errorf("message %d: placed at %s, Gmail has %s", i+1, w.id, m.ID)
		}
		if got := r.labelsOf(m); !slices.Equal(got, w.labels) {
			t.Errorf("message %d: labels %v, want %v", i+1, got, w.labels)
		}
		if !m.InternalDate.Equal(date(i + 1)) {
			t.Errorf("message %d: Gmail's date %v, want its Date %v", i+1, m.InternalDate, date(i+1))
		}
		if m.Upload != "multipart" || m.NeverMarkSpam || m.ProcessForCalendar {
			t.Errorf("message %d: %s upload, neverMarkSpam %v, processForCalendar %v", i+1, m.Upload, m.NeverMarkSpam, m.ProcessForCalendar)
		}
		if bytes.Contains(bytes.ToLower(m.Raw), []byte("x-mailflow-labels")) {
			t.Errorf("message %d: the labels field reached Gmail:\n%s", i+1, m.Raw)
		}
	}
	// Not changed where nothing had to change.
	if !bytes.Equal(stored[0].Raw, mailN(1, "", 10)) {
		t.Errorf("message 1 changed on its way:\n%s", stored[0].Raw)
	}
	if c := statuses(r.fake); c["labels.list 200"] != 1 || c["labels.create 200"] != 5 {
		t.Fatalf("label calls %v: want one list and five creates (Imported, Old, Old/2023, Work, Receipts)", c)
	}
	if !strings.Contains(r.log.String(), "labels header of its own") {
		t.Error("the spoofed labels field was not logged")
	}
}

// Without any label to give, the message goes by media upload; the
// config's import parameters are sent.
func TestMediaUploadWithoutLabels(t *testing.T) {
	r := newRig(t, rigOptions{configure: func(o *gmail.Output) {
		no := false
		o.Inbox, o.Unread, o.NeverMarkSpam, o.ProcessForCalendar, o.InternalDateSource = &no, &no, true, true, "receivedTime"
	}})
	before := time.Now()
	if _, err := r.deliver(t, newMsg(mailN(1, "", 10)), plugin.Delivery{}); err != nil {
		t.Fatal(err)
	}
	m := r.fake.Messages()[0]
	if m.Upload != "media" || len(m.LabelIDs) != 0 || !m.NeverMarkSpam || !m.ProcessForCalendar || m.InternalDate.Before(before) {
		t.Fatalf("stored %+v", m)
	}
	if c := statuses(r.fake); c["labels.list 200"] != 0 {
		t.Fatalf("labels listed for no label: %v", c)
	}
}

// A 429 with Retry-After makes the message wait that long (Throttled),
// and no other delivery calls the API meanwhile; a 403
// userRateLimitExceeded without Retry-After waits by the exponential
// back-off. Then the message goes, once.
func TestThrottlingWaitsAsAsked(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.fake.Storm(1, time.Second)
	m := newMsg(mailN(1, "", 10))
	_, err := r.deliver(t, m, plugin.Delivery{})
	wait, ok := plugin.ThrottledFor(err)
	if !ok || wait != time.Second || plugin.IsPermanent(err) || plugin.IsInDoubt(err) {
		t.Fatalf("429 with Retry-After: 1: %v (throttled %v for %v)", err, ok, wait)
	}
	n := len(r.fake.Requests())
	if _, err := r.deliver(t, newMsg(mailN(2, "", 10)), plugin.Delivery{}); err == nil {
		t.Fatal("a delivery went on while the API asked to wait")
	} else if w, ok := plugin.ThrottledFor(err); !ok || w <= 0 || w > time.Second {
		t.Fatalf("while waiting: %v", err)
	}
	if len(r.fake.Requests()) != n {
		t.Fatal("a delivery called the API while it asked to be left alone")
	}
	time.Sleep(1100 * time.Millisecond)
	r.fake.RateLimit(1, "userRateLimitExceeded")
	_, err = r.deliver(t, m, plugin.Delivery{})
	if wait, ok := plugin.ThrottledFor(err); !ok || wait < time.Second || wait > 2*time.Second {
		t.Fatalf("403 userRateLimitExceeded: %v (throttled %v for %v)", err, ok, wait)
	}
	time.Sleep(2100 * time.Millisecond)
	if _, err := r.deliver(t, m, plugin.Delivery{}); err != nil {
		t.Fatal(err)
	}
	if n := len(r.fake.Messages()); n != 1 {
		t.Fatalf("%d copies", n)
	}
}

// The reply to an import is lost: the delivery is in doubt. The retry
// (Delivery.InDoubt) finds the message by its Message-ID, in Spam too,
// and does not import it again; it places the copy it found. A message
// that had not arrived is imported; one whose Message-ID a sibling
// accounts for is imported too.
func TestInDoubtRetryFindsTheMessage(t *testing.T) {
	r := newRig(t, rigOptions{})
	for i, extra := range []string{"", "X-Gmailtest-Spam: yes\r\n"} {
		m := newMsg(mailN(i+1, extra, 10))
		r.fake.DropReply(1)
		if _, err := r.deliver(t, m, plugin.Delivery{}); !plugin.IsInDoubt(err) {
			t.Fatalf("a lost reply: %v, want in doubt", err)
		}
		placed, err := r.deliver(t, m, plugin.Delivery{InDoubt: true})
		if err != nil {
			t.Fatal(err)
		}
		stored := r.fake.Messages()
		if len(stored) != i+1 || placed != "gmail:"+stored[i].ID {
			t.Fatalf("after the retry: %d messages, placed %q", len(stored), placed)
		}
	}
	if !slices.Contains(r.fake.Messages()[1].LabelIDs, "SPAM") {
		t.Fatal("the fake's classifier did not put the second in Spam")
	}
	// In doubt, but it had not arrived: imported.
	if _, err := r.deliver(t, newMsg(mailN(3, "", 10)), plugin.Delivery{InDoubt: true}); err != nil {
		t.Fatal(err)
	}
	// In doubt, a sibling with the same Message-ID there: imported.
	if _, err := r.deliver(t, newMsg(mailN(3, "X-Copy: 2\r\n", 10)), plugin.Delivery{InDoubt: true, Siblings: 1}); err != nil {
		t.Fatal(err)
	}
	if n := len(r.fake.Messages()); n != 4 {
		t.Fatalf("%d messages, want 4", n)
	}
	if c := statuses(r.fake); c["messages.list 200"] != 4 || c["messages.import 200"] != 2 {
		t.Fatalf("calls %v", c)
	}
}

// A message without a Message-ID is given one (from its identity) so
// that an in-doubt retry finds it; with add_message_id = false it cannot
// be looked for: imported again, and said in the log.
func TestInDoubtWithoutMessageID(t *testing.T) {
	noID := func(i int) []byte {
		b := mailN(i, "", 10)
		return b[bytes.Index(b, []byte("Date:")):]
	}
	r := newRig(t, rigOptions{})
	m := newMsg(noID(1))
	r.fake.DropReply(1)
	if _, err := r.deliver(t, m, plugin.Delivery{}); !plugin.IsInDoubt(err) {
		t.Fatalf("%v", err)
	}
	if _, err := r.deliver(t, m, plugin.Delivery{InDoubt: true}); err != nil {
		t.Fatal(err)
	}
	stored := r.fake.Messages()
	if len(stored) != 1 || stored[0].MessageID != m.Identity() || !bytes.HasSuffix(stored[0].Raw, noID(1)) {
		t.Fatalf("stored %d, Message-ID %q (want %q):\n%s", len(stored), stored[0].MessageID, m.Identity(), stored[0].Raw)
	}

	r = newRig(t, rigOptions{configure: func(o *gmail.Output) { no := false; o.AddMessageID = &no }})
	m = newMsg(noID(2))
	r.fake.DropReply(1)
	r.deliver(t, m, plugin.Delivery{})
	if _, err := r.deliver(t, m, plugin.Delivery{InDoubt: true}); err != nil {
		t.Fatal(err)
	}
	if stored := r.fake.Messages(); len(stored) != 2 || !bytes.Equal(stored[0].Raw, noID(2)) {
		t.Fatalf("want the message twice, unchanged: %d", len(stored))
	}
	if !strings.Contains(r.log.String(), "may now hold it twice") {
		t.Fatal("the second copy was not reported")
	}
}

// A connection dropped while the message was on its way: never refused
// for good; the retry leaves exactly one copy.
func TestDroppedUploadThenOneCopy(t *testing.T) {
	r := newRig(t, rigOptions{})
	m := newMsg(mailN(1, "", 3<<20))
	r.fake.DropUpload(1, 64<<10)
	_, err := r.deliver(t, m, plugin.Delivery{})
	if err == nil || plugin.IsPermanent(err) {
		t.Fatalf("a dropped upload: %v", err)
	}
	if len(r.fake.Messages()) != 0 {
		t.Fatal("the fake kept a message it did not get whole")
	}
	if _, err := r.deliver(t, m, plugin.Delivery{InDoubt: plugin.IsInDoubt(err)}); err != nil {
		t.Fatal(err)
	}
	if n := len(r.fake.Messages()); n != 1 {
		t.Fatalf("%d copies", n)
	}
}

// Above resumable_above the message goes by resumable upload; an upload
// cut short is asked about and resumed from where Gmail's copy ends, and
// the message arrives whole, once. A reply lost after the last byte is
// no doubt: the session says the message was imported.
func TestResumableUploadResumes(t *testing.T) {
	r := newRig(t, rigOptions{configure: func(o *gmail.Output) { o.ResumableAbove = 64 << 10; o.Labels = []string{"Big"} }})
	big := mailN(1, "", 1<<20)
	r.fake.DropUpload(1, 300<<10)
	placed, err := r.deliver(t, newMsg(big), plugin.Delivery{})
	if err != nil {
		t.Fatal(err)
	}
	stored := r.fake.Messages()
	if len(stored) != 1 || !bytes.Equal(stored[0].Raw, big) || stored[0].Upload != "resumable" || placed != "gmail:"+stored[0].ID {
		t.Fatalf("stored %d, placed %q", len(stored), placed)
	}
	if got := r.labelsOf(stored[0]); !slices.Equal(got, []string{"Big", "INBOX", "UNREAD"}) {
		t.Fatalf("labels %v", got)
	}
	if c := statuses(r.fake); c["upload 308"] != 1 || c["upload 200"] != 1 || c["upload 0"] != 1 {
		t.Fatalf("uploads %v: want one dropped, one status query (308), one resumed PUT", c)
	}

	r.fake.DropReply(1)
	big2 := mailN(2, "", 1<<20)
	if _, err := r.deliver(t, newMsg(big2), plugin.Delivery{}); err != nil {
		t.Fatalf("a reply lost after the last byte: %v", err)
	}
	if stored := r.fake.Messages(); len(stored) != 2 || !bytes.Equal(stored[1].Raw, big2) {
		t.Fatalf("stored %d", len(stored))
	}
}

// Over max_message_size: refused for good, and nothing sent. Over
// Gmail's own limit (413): refused for good. max_message_size defaults to
// Gmail's 150 MiB.
func TestTooLargeIsRefusedForGood(t *testing.T) {
	r := newRig(t, rigOptions{})
	if r.out.MaxMessageSize != 150<<20 {
		t.Fatalf("default max_message_size %d", r.out.MaxMessageSize)
	}
	r = newRig(t, rigOptions{fake: gmailtest.Options{MaxSize: 256 << 10}, configure: func(o *gmail.Output) { o.MaxMessageSize = 1 << 20 }})
	over := newMsg(mailN(1, "", 1<<20))
	_, err := r.deliver(t, over, plugin.Delivery{})
	var tl *gmail.TooLargeError
	if !plugin.IsPermanent(err) || !errors.As(err, &tl) || tl.Limit != 1<<20 {
		t.Fatalf("over max_message_size: %v", err)
	}
	if n := len(r.fake.Requests()); n != 0 {
		t.Fatalf("%d requests for a message refused beforehand", n)
	}
	// By multipart upload, then (resumable_above lowered) resumable.
	for _, size := range []int{300 << 10, 900 << 10} {
		_, err := r.deliver(t, newMsg(mailN(2, "", size)), plugin.Delivery{})
		if !plugin.IsPermanent(err) || !strings.Contains(err.Error(), "413") {
			t.Fatalf("%d bytes over Gmail's limit: %v", size, err)
		}
		r.out.ResumableAbove = 512 << 10
	}
}

// A message Gmail cannot parse is refused for good (the engine
// quarantines it); a 5xx leaves the message in doubt (Gmail may have
// done it), never refused; a label deleted in Gmail meanwhile is made
// again on the next try.
func TestRefusalsAndTroubles(t *testing.T) {
	r := newRig(t, rigOptions{configure: func(o *gmail.Output) { o.Labels = []string{"Imported"} }})
	_, err := r.deliver(t, newMsg([]byte("this is not a message\r\n")), plugin.Delivery{})
	if !plugin.IsPermanent(err) || !strings.Contains(err.Error(), "400") {
		t.Fatalf("not a message: %v", err)
	}
	r.fake.Fail(1, 503)
	m := newMsg(mailN(1, "", 10))
	_, err = r.deliver(t, m, plugin.Delivery{})
	if err == nil || plugin.IsPermanent(err) || !plugin.IsInDoubt(err) {
		t.Fatalf("503: %v", err)
	}
	if _, err := r.deliver(t, m, plugin.Delivery{InDoubt: true}); err != nil {
		t.Fatal(err)
	}
	if !r.fake.DeleteLabel("Imported") {
		t.Fatal("no label to delete")
	}
	m = newMsg(mailN(2, "", 10))
	if _, err = r.deliver(t, m, plugin.Delivery{}); err == nil || plugin.IsPermanent(err) {
		t.Fatalf("a deleted label: %v", err)
	}
	if _, err = r.deliver(t, m, plugin.Delivery{}); err != nil {
		t.Fatal(err)
	}
	if got := r.labelsOf(r.fake.Messages()[1]); !slices.Contains(got, "Imported") {
		t.Fatalf("labels %v", got)
	}
	if n := len(r.fake.Messages()); n != 2 {
		t.Fatalf("%d messages", n)
	}
}

// With gmail.insert alone: system labels only; a user label from the
// config is refused at start, one from a script refuses the message for
// good; an in-doubt message cannot be looked for and is imported again,
// said in the log. Scopes Gmail says are too few wait, naming the login.
func TestInsertOnlyScope(t *testing.T) {
	insert := func(o *gmail.Output) { o.Scopes = []string{gmail.ScopeInsert} }
	o := &gmail.Output{Username: "me@example.com", Labels: []string{"Work"}}
	o.ClientID = "x"
	insert(o)
	if err := o.Init(); err == nil || !strings.Contains(err.Error(), "Work") {
		t.Fatalf("a user label with gmail.insert: %v", err)
	}
	r := newRig(t, rigOptions{fake: gmailtest.Options{Scopes: []string{gmailtest.ScopeInsert}}, configure: insert})
	m := newMsg(mailN(1, "", 10), `\Flagged`)
	r.fake.DropReply(1)
	r.deliver(t, m, plugin.Delivery{})
	if _, err := r.deliver(t, m, plugin.Delivery{InDoubt: true}); err != nil {
		t.Fatal(err)
	}
	if ms := r.fake.Messages(); len(ms) != 2 || !slices.Equal(ms[1].LabelIDs, []string{"INBOX", "UNREAD", "STARRED"}) {
		t.Fatalf("stored %+v", ms)
	}
	if !strings.Contains(r.log.String(), "do not allow a search") {
		t.Fatal("the possible second copy was not reported")
	}
	s := newMsg(mailN(2, "", 10))
	s.Header.Set("X-Mailflow-Labels", "Work")
	s.MarkHeaderChanged()
	if _, err := r.deliver(t, s, plugin.Delivery{}); !plugin.IsPermanent(err) {
		t.Fatalf("a script's label with gmail.insert: %v", err)
	}

	r = newRig(t, rigOptions{fake: gmailtest.Options{Scopes: []string{gmailtest.ScopeInsert}},
		configure: func(o *gmail.Output) { o.Scopes = []string{gmail.ScopeModify}; o.Labels = []string{"Work"} }})
	_, err := r.deliver(t, newMsg(mailN(3, "", 10)), plugin.Delivery{})
	if err == nil || plugin.IsPermanent(err) || !strings.Contains(err.Error(), "mailflow auth login -c /etc/mailflow.toml gmail") {
		t.Fatalf("too few scopes granted: %v", err)
	}
}
