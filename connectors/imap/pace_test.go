package imap

import (
	"context"
	"testing"
	"time"
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
