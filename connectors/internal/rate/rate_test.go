package rate

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for s, want := range map[string]time.Duration{"10/s": 100 * time.Millisecond, "600/m": 100 * time.Millisecond, " 2 / h ": 30 * time.Minute} {
		l, err := Parse(s)
		if err != nil || l.interval != want {
			t.Errorf("%q: %v, %v; want one every %v", s, l, err, want)
		}
	}
	for s, want := range map[string]string{"10": "count per unit", "0/s": "count per unit", "x/s": "count per unit", "10/d": "unit must be"} {
		if _, err := Parse(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v; want an error saying %q", s, err, want)
		}
	}
}

// Turns are one interval apart, the first at once; a wait whose context
// ends returns its error without waiting out its turn.
func TestWaitSpacesTurns(t *testing.T) {
	l, _ := Parse("20/s") // 50 ms apart
	start := time.Now()
	for range 3 {
		if err := l.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Fatalf("three turns in %v; want at least two intervals (100 ms)", took)
	}
	slow, _ := Parse("1/h")
	slow.Wait(context.Background()) // the first is at once
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := slow.Wait(ctx); err != context.Canceled {
		t.Fatalf("a wait whose context ended: %v", err)
	}
}
