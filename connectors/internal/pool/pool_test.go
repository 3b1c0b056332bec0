package pool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// fake counts what the pool does with its sessions.
type fake struct {
	mu                    sync.Mutex
	dialed, quit, dropped int
	attempts              int // dials, failed ones too
	fail                  error
	// gate, when set, holds every dial until it is closed; entered gets a
	// value as each dial begins.
	gate, entered chan struct{}
}

func (f *fake) pool(max int, idleFor time.Duration) *Pool[int] {
	return New(max, idleFor, func(ctx context.Context) (int, error) {
		f.mu.Lock()
		f.attempts++
		gate, entered := f.gate, f.entered
		f.mu.Unlock()
		if gate != nil {
			entered <- struct{}{}
			<-gate
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.fail != nil {
			return 0, f.fail
		}
		f.dialed++
		return f.dialed, nil
	}, func(int) { f.mu.Lock(); f.quit++; f.mu.Unlock() }, func(int) { f.mu.Lock(); f.dropped++; f.mu.Unlock() })
}

func (f *fake) set(fn func(f *fake)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fake) tries() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts
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

// clock is a hold-down clock that moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// heldDown is a pool of max that holds down for a minute on the clock it
// returns.
func (f *fake) heldDown(max int) (*Pool[int], *clock) {
	p := f.pool(max, 0)
	c := &clock{t: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	p.HoldDown(time.Minute)
	p.now = c.now
	return p, c
}

func TestHoldDown(t *testing.T) {
	ctx := context.Background()
	refused := errors.New("no STARTTLS")
	t.Run("many Gets against a server that refuses: one dial, every Get fails with its error", func(t *testing.T) {
		const n = 20
		f := &fake{fail: refused, gate: make(chan struct{}), entered: make(chan struct{}, n)}
		p, _ := f.heldDown(n)
		errs := make(chan error, n)
		var called sync.WaitGroup
		called.Add(n)
		for range n {
			go func() {
				called.Done()
				_, err := p.Get(ctx)
				errs <- err
			}()
		}
		<-f.entered // one dial is under way
		called.Wait()
		close(f.gate)
		var down int
		for range n {
			err := <-errs
			var de *DownError
			if !errors.Is(err, refused) {
				t.Fatalf("want the dial's error, got %v", err)
			}
			if errors.As(err, &de) {
				down++
			}
		}
		if a := f.tries(); a != 1 || down != n-1 {
			t.Fatalf("%d dials, %d Gets failed without one; want 1 and %d", a, down, n-1)
		}
	})
	t.Run("it ends, and then a Get dials again", func(t *testing.T) {
		f := &fake{fail: refused}
		p, clk := f.heldDown(2)
		p.Get(ctx)
		f.set(func(f *fake) { f.fail = nil })
		if _, err := p.Get(ctx); !errors.Is(err, refused) || f.tries() != 1 {
			t.Fatalf("during the hold-down: %v after %d dials", err, f.tries())
		}
		clk.add(time.Minute)
		if c, err := p.Get(ctx); err != nil || c != 1 {
			t.Fatalf("after it: %d %v", c, err)
		}
	})
	t.Run("with a session open, a Get waits for it rather than fail", func(t *testing.T) {
		f := &fake{}
		p, _ := f.heldDown(2)
		a, _ := p.Get(ctx)
		f.set(func(f *fake) { f.fail = refused })
		if _, err := p.Get(ctx); !errors.Is(err, refused) {
			t.Fatalf("second session: %v", err)
		}
		got := make(chan error)
		go func() {
			c, err := p.Get(ctx)
			if err == nil && c != a {
				err = fmt.Errorf("got session %d, want %d", c, a)
			}
			got <- err
		}()
		p.Put(a, false)
		if err := <-got; err != nil || f.tries() != 2 {
			t.Fatalf("%v after %d dials", err, f.tries())
		}
		// Once none is open, a Get fails: nothing could be put back.
		go func() { _, err := p.Get(ctx); got <- err }()
		p.Put(a, true)
		if err := <-got; !errors.Is(err, refused) || f.tries() != 2 {
			t.Fatalf("with none open: %v after %d dials", err, f.tries())
		}
	})
	t.Run("a dial the caller gave up on is not remembered", func(t *testing.T) {
		f := &fake{}
		p := New(1, 0, func(ctx context.Context) (int, error) {
			f.mu.Lock()
			f.attempts++
			f.mu.Unlock()
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 1, nil
		}, func(int) {}, func(int) {})
		p.HoldDown(time.Minute)
		gone, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := p.Get(gone); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled: %v", err)
		}
		if _, err := p.Get(ctx); err != nil {
			t.Fatalf("the next Get must dial: %v", err)
		}
	})
}
