package imap

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mailflow/mailflow/connectors/internal/endpoint"
	"github.com/mailflow/mailflow/engine/message"
)

// 10 bookings of 100 bytes at 2,000 bytes a second: the last may start no
// sooner than 450 ms after the first (9 × 50 ms), and a cancelled wait
// returns at once.
func TestPaceSpacesUploads(t *testing.T) {
	p := &pace{perSecond: 2000}
	start := time.Now()
	for range 10 {
		if err := p.wait(context.Background(), 100); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took < 440*time.Millisecond {
		t.Fatalf("10 × 100 bytes at 2,000 B/s took %v, want at least 450 ms", took)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p.wait(ctx, 1<<20) // books 512 s ahead
	if err := p.wait(ctx, 1); err == nil {
		t.Fatal("a wait with its context ended must fail, not sleep")
	}
	var none *pace
	if err := none.wait(context.Background(), 1<<30); err != nil {
		t.Fatal(err)
	}
}

// max_bytes_per_day: a day's bytes go at once; the next message waits until
// the bucket has filled enough for it, which takes the share of a day its
// size is; bytes given back count again; a message larger than a day goes
// only when the bucket is full.
func TestDayBudget(t *testing.T) {
	b := newDayBudget(86400) // a byte a second
	if _, ok := b.take(86000); !ok {
		t.Fatal("the first 86,000 bytes of 86,400 must go")
	}
	wait, ok := b.take(1400)
	if ok || wait < 999*time.Second || wait > 1000*time.Second {
		t.Fatalf("1,400 more with 400 left: %v %v, want a wait of about 1,000 s", wait, ok)
	}
	b.giveBack(86000)
	if _, ok := b.take(1400); !ok {
		t.Fatal("bytes given back count again")
	}
	huge := newDayBudget(100)
	if _, ok := huge.take(1000); !ok {
		t.Fatal("a message larger than a day's budget goes when the bucket is full")
	}
	if wait, ok := huge.take(1); ok || wait < 23*time.Hour {
		t.Fatalf("after it: %v %v, want to wait most of a day", wait, ok)
	}
	var none *dayBudget
	if _, ok := none.take(1 << 40); !ok {
		t.Fatal("no budget, no bound")
	}
}

// rate = "20/s": four messages delivered at once go 50 ms apart, all
// stored; a rate that cannot be read is refused at Init.
func TestOutputRateSpacesMessages(t *testing.T) {
	addr := memServer(t)
	o := newOutput(t, addr, func(o *Output) { o.Rate = "20/s" })
	var msgs []*message.Message
	for i := range 4 {
		msgs = append(msgs, testMessage(i, "INBOX"))
	}
	start := time.Now()
	for i, d := range deliverAll(o, msgs, false) {
		if d.err != nil {
			t.Fatalf("message %d: %v", i, d.err)
		}
	}
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Fatalf("4 messages at 20/s stored in %v, want at least 150 ms (3 × 50 ms)", took)
	}
	if n := len(dump(t, login(t, addr, "dst"))); n != 4 {
		t.Fatalf("%d stored, want 4", n)
	}
	bad := &Output{Endpoint: Endpoint{Settings: endpoint.Settings{Address: addr, TLS: "none", Username: "dst", Password: "p", AllowPlaintextAuth: true}}, Rate: "fast"}
	if err := bad.Init(); err == nil || !strings.Contains(err.Error(), `rate "fast"`) {
		t.Fatalf("rate = \"fast\": %v", err)
	}
}
