package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine/message"
)

// Messages that together do not fit in memory_budget wait for room, one
// at a time here, rather than being spooled to disk: every one arrives
// whole and once, never two in memory at once, no spool file is made. A
// shutdown while one waits leaves it and the rest at the source.
func TestMessagesWaitForRoomInTheMemoryBudget(t *testing.T) {
	var msgs [][]byte
	for i := range 8 {
		msgs = append(msgs, append([]byte(fmt.Sprintf("Subject: %d\r\n\r\n", i)), bytes.Repeat([]byte("0123456789abcde\r\n"), 200<<10/17)...))
	}
	h := newHarnessWith(t, msgs, []string{"out"}, "", "memory_budget = 307200 # 300 KiB: room for one of these")
	var inMemory, most atomic.Int64
	h.outs["out"].fail = func(m *message.Message) error {
		n := inMemory.Add(m.OriginalSize())
		for {
			old := most.Load()
			if n <= old || most.CompareAndSwap(old, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		inMemory.Add(-m.OriginalSize())
		return nil
	}
	st, err := h.e.PollOnce(context.Background(), "mem")
	if err != nil || st.Delivered != int64(len(msgs)) {
		t.Fatalf("delivered %d of %d: %v", st.Delivered, len(msgs), err)
	}
	for i, m := range msgs {
		if !bytes.Equal(h.outs["out"].got[fmt.Sprint(i)], m) || h.in.commits[fmt.Sprint(i)] != 1 {
			t.Fatalf("message %d changed or committed %d times", i, h.in.commits[fmt.Sprint(i)])
		}
	}
	if n := most.Load(); n > 307200 {
		t.Fatalf("%d bytes of messages were delivered at once, over the 300 KiB budget", n)
	}
	spool := filepath.Join(h.e.Config().StateDir, "spool")
	if ents, _ := os.ReadDir(spool); len(ents) != 0 {
		t.Fatalf("%d files in the spool; nothing should have spilled", len(ents))
	}

	// Again, with a shutdown during the third delivery: the poll ends, and
	// what was not delivered is still at the source, uncommitted.
	h2 := newHarnessWith(t, msgs, []string{"out"}, "", "memory_budget = 307200")
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int32
	h2.outs["out"].fail = func(*message.Message) error {
		if n.Add(1) == 3 {
			cancel()
		}
		time.Sleep(20 * time.Millisecond)
		return nil
	}
	done := make(chan struct{})
	go func() { h2.e.PollOnce(ctx, "mem"); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the poll did not end after the shutdown")
	}
	committed := 0
	for i := range msgs {
		if h2.in.committed(fmt.Sprint(i)) {
			committed++
			if h2.outs["out"].got[fmt.Sprint(i)] == nil {
				t.Fatalf("message %d committed at the source but never delivered", i)
			}
		}
	}
	if committed == len(msgs) || committed > 3 {
		t.Fatalf("%d of %d committed after a shutdown during the third delivery", committed, len(msgs))
	}
}
