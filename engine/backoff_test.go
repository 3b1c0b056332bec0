package engine

import (
	"testing"
	"time"
)

// A server that asks to be left alone for a while is, for at least that
// long, even when it asks while the output already backs off.
func TestBackoffHonoursTheWaitAServerAsksFor(t *testing.T) {
	var b backoffs
	if d := b.fail("out", 0); d != backoffBase {
		t.Fatalf("first failure: %v, want %v", d, backoffBase)
	}
	if d := b.fail("out", 0); d != 0 {
		t.Fatalf("a failure while backing off: %v, want 0 (not logged again)", d)
	}
	if d := b.fail("out", 2*time.Minute); d != 2*time.Minute || b.wait("out") < 119*time.Second {
		t.Fatalf("asked for 2m while backing off: %v, waits %v", d, b.wait("out"))
	}
	if d := b.fail("other", 30*time.Second); d != 30*time.Second {
		t.Fatalf("asked for 30s at the first failure: %v", d)
	}
	b.ok("out")
	if b.wait("out") > 0 {
		t.Fatal("a success did not end the back-off")
	}
}
