package pool

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// fake counts what the pool does with its sessions.
type fake struct {
	mu                    sync.Mutex
	dialed, quit, dropped int
	fail                  error
}

func (f *fake) pool(max int, idleFor time.Duration) *Pool[int] {
	return New(max, idleFor, func(ctx context.Context) (int, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.fail != nil {
			return 0, f.fail
		}
		f.dialed++
		return f.dialed, nil
	}, func(int) { f.mu.Lock(); f.quit++; f.mu.Unlock() }, func(int) { f.mu.Lock(); f.dropped++; f.mu.Unlock() })
}

func (f *fake) counts() (int, int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dialed, f.quit, f.dropped
}

func TestPool(t *testing.T) {
	ctx := context.Background()
	t.Run("reuses an idle session", func(t *testing.T) {
		f := &fake{}
		p := f.pool(2, 0)
		a, _ := p.Get(ctx)
		p.Put(a, false)
		b, _ := p.Get(ctx)
		if a != b {
			t.Fatalf("got session %d, want the idle %d", b, a)
		}
		if d, _, _ := f.counts(); d != 1 {
			t.Fatalf("dialed %d times, want 1", d)
		}
	})
	t.Run("at most max open; the next waits for one", func(t *testing.T) {
		f := &fake{}
		p := f.pool(2, 0)
		a, _ := p.Get(ctx)
		p.Get(ctx)
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		if _, err := p.Get(short); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a third session with max 2: %v", err)
		}
		go func() { time.Sleep(10 * time.Millisecond); p.Put(a, false) }()
		if c, err := p.Get(ctx); err != nil || c != a {
			t.Fatalf("want the session put back, got %d %v", c, err)
		}
	})
	t.Run("a broken session is dropped and frees its slot", func(t *testing.T) {
		f := &fake{}
		p := f.pool(1, 0)
		a, _ := p.Get(ctx)
		p.Put(a, true)
		b, err := p.Get(ctx)
		if err != nil || b == a {
			t.Fatalf("want a new session, got %d %v", b, err)
		}
		if _, _, dropped := f.counts(); dropped != 1 {
			t.Fatalf("dropped %d, want 1", dropped)
		}
	})
	t.Run("one idle too long is ended, not reused", func(t *testing.T) {
		f := &fake{}
		p := f.pool(1, time.Millisecond)
		a, _ := p.Get(ctx)
		p.Put(a, false)
		time.Sleep(5 * time.Millisecond)
		b, _ := p.Get(ctx)
		if _, quit, _ := f.counts(); b == a || quit != 1 {
			t.Fatalf("got %d (had %d), %d quit", b, a, quit)
		}
	})
	t.Run("a failed dial frees its slot", func(t *testing.T) {
		f := &fake{fail: errors.New("refused")}
		p := f.pool(1, 0)
		if _, err := p.Get(ctx); err == nil {
			t.Fatal("want the dial's error")
		}
		f.mu.Lock()
		f.fail = nil
		f.mu.Unlock()
		if _, err := p.Get(ctx); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("close ends the idle, and the busy when put back", func(t *testing.T) {
		f := &fake{}
		p := f.pool(2, 0)
		a, _ := p.Get(ctx)
		b, _ := p.Get(ctx)
		p.Put(a, false)
		p.Close()
		p.Put(b, false)
		if _, quit, dropped := f.counts(); quit != 1 || dropped != 1 {
			t.Fatalf("quit %d, dropped %d; want 1 and 1", quit, dropped)
		}
	})
}
