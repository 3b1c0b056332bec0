package engine

import (
	"context"
	"testing"
	"time"
)

// A message that does not fit waits until deliveries give bytes back, not
// for ever and not past its context; take never waits.
func TestMemBudgetWaitsForRoom(t *testing.T) {
	b := newMemBudget(10)
	if !b.take(8) || b.take(5) {
		t.Fatal("take: 8 of 10 should fit, 5 more should not")
	}
	got := make(chan bool)
	go func() { got <- b.wait(context.Background(), 5) }()
	select {
	case <-got:
		t.Fatal("wait returned with only 2 bytes free")
	case <-time.After(50 * time.Millisecond):
	}
	b.give(8)
	select {
	case ok := <-got:
		if !ok {
			t.Fatal("wait failed after room was given back")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("wait did not see the bytes given back")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if b.wait(ctx, 6) {
		t.Fatal("6 bytes with 5 free and none coming back")
	}
	b.give(5)
	if !b.take(10) {
		t.Fatal("the budget did not come back whole")
	}
}
