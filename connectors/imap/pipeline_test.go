package imap

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailflow/mailflow/connectors/internal/endpoint"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
)

// newOutput is an IMAP output for user dst at addr (password "p"), its
// config changed by set before Init.
func newOutput(t *testing.T, addr string, set func(*Output)) *Output {
	t.Helper()
	o := &Output{Endpoint: Endpoint{Settings: endpoint.Settings{Address: addr, TLS: "none", Username: "dst", Password: "p",
		AllowPlaintextAuth: true, Timeout: "5s"}}}
	o.Provision(plugin.Env{Name: "out", Logger: slog.New(slog.NewTextHandler(testLog, nil)), BaseDir: t.TempDir()})
	if set != nil {
		set(o)
	}
	if err := o.Init(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

// testMessage is message i, distinct from every other, in folder.
func testMessage(i int, folder string) *message.Message {
	m := message.New([]byte(fmt.Sprintf("Message-ID: <p%d@x.test>\r\nSubject: %d\r\n\r\n%s\r\n", i, i, strings.Repeat("body ", 10*i))), message.Source{Input: "in", ID: fmt.Sprint(i)})
	m.Folder, m.Flags = folder, []string{`\Seen`}
	return m
}

// delivered is what became of one Deliver.
type delivered struct {
	err    error
	placed string
}

// deliverAll delivers msgs at once, each from a goroutine of its own, and
// returns what became of each, in order.
func deliverAll(o *Output, msgs []*message.Message, inDoubt bool) []delivered {
	out := make([]delivered, len(msgs))
	var wg sync.WaitGroup
	for i, m := range msgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, out[i].err = o.Deliver(ctx, m, plugin.Delivery{Key: m.Key(), InDoubt: inDoubt, Placed: func(w string) { out[i].placed = w }})
		}()
	}
	wg.Wait()
	return out
}

const scriptedCaps = "IMAP4rev1 LITERAL+ UIDPLUS NAMESPACE"

// Four APPENDs go out on one session before the first reply: the server
// answers none until it has read all four, which a client waiting for each
// reply (or for a "+") never gets to. The replies come in reverse order,
// and each message is settled by its own: every one accepted, each placed
// where its APPENDUID says, the bytes as they were.
func TestAppendsArePipelined(t *testing.T) {
	srv, addr := newScripted(t, scriptedCaps)
	o := newOutput(t, addr, func(o *Output) { o.MaxConnections, o.AppendWindow = 1, 4 })
	var msgs []*message.Message
	for i := range 4 {
		msgs = append(msgs, testMessage(i, "INBOX"))
	}
	done := make(chan []delivered)
	go func() { done <- deliverAll(o, msgs, false) }()
	var got []scriptedAppend
	for range 4 {
		got = append(got, srv.next(t))
	}
	for i := len(got) - 1; i >= 0; i-- {
		a := got[i]
		if a.sync {
			t.Errorf("APPEND %s waited for the server's +: %q", a.tag, a.line)
		}
		a.s.reply("%s OK [APPENDUID 7 %d] done", a.tag, 100+i)
	}
	res := <-done
	uidOf := map[string]int{}
	for i, a := range got {
		uidOf[string(a.message)] = 100 + i
	}
	for i, r := range res {
		raw, _ := rawOf(msgs[i])
		uid, sent := uidOf[string(raw)]
		if r.err != nil || !sent {
			t.Fatalf("message %d: %v (sent: %v)", i, r.err, sent)
		}
		if want := where("INBOX", 7, uint32(uid)); r.placed != want {
			t.Errorf("message %d placed at %q, want %q", i, r.placed, want)
		}
	}
	if n := srv.sessionCount(); n != 1 {
		t.Errorf("%d sessions, want 1", n)
	}
}

// rawOf is the message's bytes as an output sends them.
func rawOf(m *message.Message) ([]byte, error) {
	var b bytes.Buffer
	_, err := m.WriteTo(&b)
	return b.Bytes(), err
}

// The server takes four APPENDs, stores the first, refuses the second and
// drops the session: the first is accepted, the second failed and is not
// in doubt (a NO stores nothing), and only the last two, which had gone
// out without a reply, are in doubt.
func TestALostSessionLeavesOnlyTheUnansweredInDoubt(t *testing.T) {
	srv, addr := newScripted(t, scriptedCaps)
	o := newOutput(t, addr, func(o *Output) { o.MaxConnections, o.AppendWindow = 1, 4 })
	var msgs []*message.Message
	for i := range 4 {
		msgs = append(msgs, testMessage(i, "INBOX"))
	}
	done := make(chan []delivered)
	go func() { done <- deliverAll(o, msgs, false) }()
	var got []scriptedAppend
	for range 4 {
		got = append(got, srv.next(t))
	}
	got[0].s.reply("%s OK [APPENDUID 7 1] stored", got[0].tag)
	got[1].s.reply("%s NO cannot store this one", got[1].tag)
	got[0].s.drop()
	res := <-done
	outcome := map[string]string{}
	for i, r := range res {
		raw, _ := rawOf(msgs[i])
		switch {
		case r.err == nil:
			outcome[string(raw)] = "accepted"
		case plugin.IsInDoubt(r.err):
			outcome[string(raw)] = "in doubt"
		case plugin.IsPermanent(r.err):
			outcome[string(raw)] = "refused for good"
		default:
			outcome[string(raw)] = "failed"
		}
	}
	want := []string{"accepted", "failed", "in doubt", "in doubt"}
	for i, a := range got {
		if outcome[string(a.message)] != want[i] {
			t.Errorf("APPEND %d (%s): %s, want %s", i, a.tag, outcome[string(a.message)], want[i])
		}
	}
}

// A session the server closed while it was idle is not used: the next
// message goes out on a new session, and is not in doubt, whatever happens
// to it.
func TestASessionClosedWhileIdleIsNotUsed(t *testing.T) {
	srv, addr := newScripted(t, scriptedCaps)
	o := newOutput(t, addr, func(o *Output) { o.MaxConnections = 1 })
	first := make(chan delivered)
	go func() { first <- deliverAll(o, []*message.Message{testMessage(1, "INBOX")}, false)[0] }()
	a := srv.next(t)
	a.s.reply("%s OK [APPENDUID 7 1] stored", a.tag)
	if r := <-first; r.err != nil {
		t.Fatal(r.err)
	}
	a.s.reply("* BYE Disconnected for inactivity")
	a.s.drop()
	// Idle: the client has read the BYE before the next message comes.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		o.lanes.mu.Lock()
		open := len(o.lanes.all) > 0 && o.lanes.all[0].c.open()
		o.lanes.mu.Unlock()
		if !open {
			break
		}
	}
	second := make(chan delivered)
	go func() { second <- deliverAll(o, []*message.Message{testMessage(2, "INBOX")}, false)[0] }()
	b := srv.next(t)
	if b.s == a.s {
		t.Fatal("the message went out on the closed session")
	}
	b.s.reply("%s OK [APPENDUID 7 2] stored", b.tag)
	if r := <-second; r.err != nil {
		t.Fatalf("second message: %v", r.err)
	}
}

// A session that waited a while is asked a NOOP before a message goes out
// on it; one that does not answer is given up, and the message goes on a
// new one.
func TestAStaleSessionIsCheckedFirst(t *testing.T) {
	srv, addr := newScripted(t, scriptedCaps)
	o := newOutput(t, addr, func(o *Output) { o.MaxConnections, o.Timeout = 1, "1s" })
	o.lanes.checkAfter = time.Millisecond
	first := make(chan delivered)
	go func() { first <- deliverAll(o, []*message.Message{testMessage(1, "INBOX")}, false)[0] }()
	a := srv.next(t)
	a.s.reply("%s OK [APPENDUID 7 1] stored", a.tag)
	if r := <-first; r.err != nil {
		t.Fatal(r.err)
	}
	time.Sleep(5 * time.Millisecond)
	// The server forgot the session without closing it: the NOOP gets
	// nothing back, the watchdog (timeout 1 s) ends it.
	a.s.deaf.Store(true)
	second := make(chan delivered)
	go func() { second <- deliverAll(o, []*message.Message{testMessage(2, "INBOX")}, false)[0] }()
	b := srv.next(t)
	if b.s == a.s {
		t.Fatal("the message went out on the stale session")
	}
	b.s.reply("%s OK [APPENDUID 7 2] stored", b.tag)
	if r := <-second; r.err != nil {
		t.Fatalf("second message: %v", r.err)
	}
}

// A BYE that ends the session says why: the messages whose reply it cut
// off are in doubt, and the output waits as long as the server asked.
func TestAByeSaysHowLongToWait(t *testing.T) {
	srv, addr := newScripted(t, scriptedCaps)
	o := newOutput(t, addr, func(o *Output) { o.MaxConnections = 1 })
	done := make(chan delivered)
	go func() { done <- deliverAll(o, []*message.Message{testMessage(1, "INBOX")}, false)[0] }()
	a := srv.next(t)
	a.s.reply("* BYE [UNAVAILABLE] Request is throttled. Suggested Backoff Time: 2500 milliseconds")
	a.s.drop()
	r := <-done
	if !plugin.IsInDoubt(r.err) {
		t.Fatalf("%v: want in doubt", r.err)
	}
	if d, ok := plugin.ThrottledFor(r.err); !ok || d != 2500*time.Millisecond {
		t.Fatalf("%v: waits %v (%v), want 2.5 s", r.err, d, ok)
	}
}

// Without LITERAL+ a message waits for the server's "+", and the next
// APPEND waits for the one before it: one in flight.
func TestWithoutLiteralPlusOneAppendAtATime(t *testing.T) {
	srv, addr := newScripted(t, "IMAP4rev1 UIDPLUS")
	o := newOutput(t, addr, func(o *Output) { o.MaxConnections, o.AppendWindow = 1, 4 })
	done := make(chan []delivered)
	go func() {
		done <- deliverAll(o, []*message.Message{testMessage(1, "INBOX"), testMessage(2, "INBOX")}, false)
	}()
	for i := range 2 {
		a := srv.next(t)
		if !a.sync {
			t.Errorf("APPEND %d did not wait for the +", i)
		}
		select {
		case b := <-srv.appends:
			t.Fatalf("APPEND %s came before %s was answered", b.tag, a.tag)
		case <-time.After(100 * time.Millisecond):
		}
		a.s.reply("%s OK [APPENDUID 7 %d] stored", a.tag, i+1)
	}
	for _, r := range <-done {
		if r.err != nil {
			t.Fatal(r.err)
		}
	}
}

// Folder names go as UTF-8 to a server that takes it (UTF8=ACCEPT,
// enabled), else in modified UTF-7.
func TestFolderNamesInUTF8WhereTheServerTakesIt(t *testing.T) {
	for _, c := range []struct{ caps, name string }{
		{scriptedCaps + " ENABLE UTF8=ACCEPT", `"Entwürfe"`},
		{scriptedCaps, `"Entw&APw-rfe"`},
	} {
		t.Run(c.caps, func(t *testing.T) {
			srv, addr := newScripted(t, c.caps)
			o := newOutput(t, addr, nil)
			done := make(chan delivered)
			go func() { done <- deliverAll(o, []*message.Message{testMessage(1, "Entwürfe")}, false)[0] }()
			a := srv.next(t)
			a.s.reply("%s OK [APPENDUID 7 1] stored", a.tag)
			if r := <-done; r.err != nil {
				t.Fatal(r.err)
			}
			if !strings.Contains(a.line, "APPEND "+c.name+" ") {
				t.Errorf("APPEND %q, want the folder as %s", a.line, c.name)
			}
			if cmds := srv.commands(); !slices.Contains(cmds, "CREATE "+c.name) {
				t.Errorf("commands %q, want CREATE %s", cmds, c.name)
			}
		})
	}
}

// A server that takes one session per user: the output makes do with it
// rather than failing the messages that wanted another.
func TestASessionLimitIsMadeDoWith(t *testing.T) {
	srv, addr := newScripted(t, scriptedCaps)
	srv.mu.Lock()
	srv.limit = 1
	srv.mu.Unlock()
	o := newOutput(t, addr, func(o *Output) { o.MaxConnections, o.AppendWindow = 4, 1 })
	var msgs []*message.Message
	for i := range 3 {
		msgs = append(msgs, testMessage(i, "INBOX"))
	}
	done := make(chan []delivered)
	go func() { done <- deliverAll(o, msgs, false) }()
	for i := range 3 {
		a := srv.next(t)
		a.s.reply("%s OK [APPENDUID 7 %d] stored", a.tag, i+1)
	}
	for i, r := range <-done {
		if r.err != nil {
			t.Errorf("message %d: %v", i, r.err)
		}
	}
}

// Warm dials the first session ahead of need (a migration's destination
// logs in while the source is surveyed); a delivery that comes while
// that session is on its way waits for it rather than dial a second.
func TestADeliveryWaitsForTheSessionWarmDials(t *testing.T) {
	srv, addr := newScripted(t, scriptedCaps)
	greet := make(chan struct{})
	srv.mu.Lock()
	srv.greet = greet
	srv.mu.Unlock()
	o := newOutput(t, addr, func(o *Output) { o.MaxConnections, o.AppendWindow = 4, 4 })
	o.Warm(context.Background())
	done := make(chan []delivered)
	go func() { done <- deliverAll(o, []*message.Message{testMessage(1, "INBOX")}, false) }()
	// Time for the delivery to dial a session of its own, were it to.
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline) && srv.sessionCount() < 2; {
		time.Sleep(10 * time.Millisecond)
	}
	close(greet)
	a := srv.next(t)
	a.s.reply("%s OK [APPENDUID 7 1] stored", a.tag)
	if r := <-done; r[0].err != nil || r[0].placed != "INBOX;UIDVALIDITY=7/;UID=1" {
		t.Fatalf("delivery: %+v", r)
	}
	if n := srv.sessionCount(); n != 1 {
		t.Fatalf("%d sessions, want the one warmed", n)
	}
}

// A command that needs a session to itself (here a look at what a folder
// holds) while an APPEND is in flight on the only one: where round trips
// are cheap it waits for that APPEND's answer rather than log in again;
// where they cost (a server 5 ms away), it dials a session of its own.
func TestACommandWaitsForTheSessionWhereRoundTripsAreCheap(t *testing.T) {
	for _, c := range []struct {
		slow     time.Duration
		sessions int
	}{{0, 1}, {5 * time.Millisecond, 2}} {
		srv, addr := newScripted(t, scriptedCaps)
		srv.mu.Lock()
		srv.slow = c.slow
		srv.mu.Unlock()
		o := newOutput(t, addr, func(o *Output) { o.MaxConnections, o.AppendWindow = 4, 4 })
		done := make(chan []delivered)
		go func() { done <- deliverAll(o, []*message.Message{testMessage(1, "INBOX")}, false) }()
		a := srv.next(t)
		looked := make(chan error)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := o.Holds(ctx, "INBOX", "")
			looked <- err
		}()
		// Time for the look to dial, were it to.
		for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline) && srv.sessionCount() < 2; {
			time.Sleep(10 * time.Millisecond)
		}
		a.s.reply("%s OK [APPENDUID 7 1] stored", a.tag)
		if r := <-done; r[0].err != nil {
			t.Fatalf("NAMESPACE after %v: delivery: %v", c.slow, r[0].err)
		}
		if err := <-looked; err != nil {
			t.Fatalf("NAMESPACE after %v: look: %v", c.slow, err)
		}
		if n := srv.sessionCount(); n != c.sessions {
			t.Errorf("NAMESPACE after %v: %d sessions, want %d", c.slow, n, c.sessions)
		}
	}
}
