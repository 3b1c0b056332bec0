package human

import "testing"

func TestBytesAreDecimal(t *testing.T) {
	for n, want := range map[int64]string{999: "999 B", 1000: "1.0 kB", 885_600_000: "885.6 MB", 2_500_000_000: "2.50 GB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
	if got := Clip("Grüße aus Köln", 6); got != "Grüße…" {
		t.Errorf("Clip: %q", got)
	}
}
