// Package human says numbers and text the way people read them in a
// terminal: sizes in decimal units, one line clipped to a width.
package human

import (
	"fmt"
	"strings"
)

// Bytes says a size in decimal units (a MB is 10^6 bytes), as disks and
// mail providers count.
func Bytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// Line makes s one line of at most 120 bytes.
func Line(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

// Clip makes s one line of at most n characters, with … where it was cut.
func Clip(s string, n int) string {
	s = Line(s)
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
