package gmail

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// The budget lets a second's worth go at once, then holds the rate: 100
// units a second, four requests of 50: two at once, the third after half
// a second, the fourth after one.
func TestQuotaPaces(t *testing.T) {
	q := newQuota(100)
	start := time.Now()
	var at []time.Duration
	for range 4 {
		if err := q.wait(context.Background(), 50); err != nil {
			t.Fatal(err)
		}
		at = append(at, time.Since(start))
	}
	if at[1] > 300*time.Millisecond || at[2] < 450*time.Millisecond || at[3] < 950*time.Millisecond || at[3] > 3*time.Second {
		t.Fatalf("started at %v", at)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := q.wait(ctx, 100); err == nil {
		t.Fatal("a cancelled wait went on")
	}
}

// Retry-After in seconds or as an HTTP date; nothing else.
func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":   0,
		"7":  7 * time.Second,
		"0":  0,
		"-3": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Minute).Format(http.TimeFormat):     0,
		"soon": 0,
	} {
		if got := retryAfter(v, now); got != want {
			t.Errorf("Retry-After %q: %v, want %v", v, got, want)
		}
	}
}
