package srs

import (
	"errors"
	"testing"
	"time"
)

// The vectors were computed outside Go, by a few lines of Python written
// from libsrs2's algorithm as postsrsd documents and implements it
// (HMAC-SHA1 over the lowercased timestamp, domain and local part, base64,
// four characters; the day modulo 1024 in two base32 characters).
var day = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func rewriter(at time.Time, secrets ...string) *Rewriter {
	return &Rewriter{Domain: "fwd.example", Secrets: secrets, Now: func() time.Time { return at }}
}

func TestForwardMatchesPostsrsdVectors(t *testing.T) {
	r := rewriter(day, "tops3cret")
	for in, want := range map[string]string{
		"Alice.Smith@orig.example":                      "SRS0=kCr1=JT=orig.example=Alice.Smith@fwd.example",
		"SRS0=H5mY=JT=orig.example=alice@first.example": "SRS1=8XJv=first.example==H5mY=JT=orig.example=alice@fwd.example",
		"":               "",
		"<>":             "<>",
		"me@fwd.example": "me@fwd.example",
		"postmaster":     "postmaster",
	} {
		got, err := r.Forward(in)
		if err != nil || got != want {
			t.Errorf("Forward(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestRoundTrips(t *testing.T) {
	r := rewriter(day, "tops3cret")
	srs0, _ := r.Forward("Alice.Smith@orig.example")
	if back, err := r.Reverse(srs0); err != nil || back != "Alice.Smith@orig.example" {
		t.Fatalf("SRS0 reversed: %q %v", back, err)
	}
	// Forwarded again by a second forwarder with its own secret.
	second := &Rewriter{Domain: "second.example", Secrets: []string{"other"}, Now: r.Now}
	srs1, _ := second.Forward(srs0)
	if srs1[:5] != "SRS1=" {
		t.Fatalf("second forward: %q", srs1)
	}
	back, err := second.Reverse(srs1)
	if err != nil || back != srs0 {
		t.Fatalf("SRS1 reversed: %q %v, want %q", back, err, srs0)
	}
	// A third forwarder keeps the first forwarder in SRS1.
	third := &Rewriter{Domain: "third.example", Secrets: []string{"third"}, Now: r.Now}
	srs1b, _ := third.Forward(srs1)
	if back, err := third.Reverse(srs1b); err != nil || back != srs0 {
		t.Fatalf("SRS1 of SRS1 reversed: %q %v", back, err)
	}
	// Case smashed by a mail system on the way still reverses.
	if back, err := r.Reverse("srs0=kcr1=jt=orig.example=alice.smith@fwd.example"); err != nil || back != "alice.smith@orig.example" {
		t.Fatalf("lowercased: %q %v", back, err)
	}
}

func TestRefused(t *testing.T) {
	r := rewriter(day, "tops3cret")
	good, _ := r.Forward("alice@orig.example")
	for name, c := range map[string]struct {
		r    *Rewriter
		addr string
		want error
	}{
		"tampered hash": {r, "SRS0=AAAA" + good[9:], ErrHash},
		"tampered user": {r, good[:len(good)-len("alice@fwd.example")] + "mallory@fwd.example", ErrHash},
		"wrong secret":  {rewriter(day, "another"), good, ErrHash},
		"expired":       {rewriter(day.Add(22*24*time.Hour), "tops3cret"), good, ErrExpired},
		"not srs":       {r, "alice@orig.example", ErrNotSRS},
		"short":         {r, "SRS0=x@fwd.example", ErrNotSRS},
		"bad srs1":      {r, "SRS1=abcd=host=noseparator@fwd.example", ErrNotSRS},
	} {
		if _, err := c.r.Reverse(c.addr); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	// 21 days is still good, and across the 1024-day wrap too.
	if _, err := rewriter(day.Add(21*24*time.Hour), "tops3cret").Reverse(good); err != nil {
		t.Errorf("21 days: %v", err)
	}
	wrap := time.Unix((20787/1024*1024+1023)*86400, 0) // the last day before the counter wraps
	w, _ := rewriter(wrap, "s").Forward("a@b.example")
	if _, err := rewriter(wrap.Add(3*24*time.Hour), "s").Reverse(w); err != nil {
		t.Errorf("across the wrap: %v", err)
	}
}

// A new secret signs; the old one still reverses what it signed.
func TestSecretRotation(t *testing.T) {
	old := rewriter(day, "old")
	addr, _ := old.Forward("alice@orig.example")
	rotated := rewriter(day, "new", "old")
	if back, err := rotated.Reverse(addr); err != nil || back != "alice@orig.example" {
		t.Fatalf("old address after rotation: %q %v", back, err)
	}
	fresh, _ := rotated.Forward("alice@orig.example")
	if fresh == addr {
		t.Fatal("the new secret does not sign")
	}
	if _, err := old.Reverse(fresh); !errors.Is(err, ErrHash) {
		t.Fatalf("the retired secret alone accepted the new address: %v", err)
	}
}
