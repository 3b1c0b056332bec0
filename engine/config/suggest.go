package config

import (
	"fmt"
	"strings"
)

// Suggest returns `; did you mean "x"?` for the known name nearest to
// name, when one is near enough to be a slip of the keyboard, or "".
func Suggest(name string, known []string) string {
	if best := Nearest(name, known); best != "" {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	return ""
}

// Nearest is the known name nearest to name when one is near enough to be
// a slip of the keyboard (an edit distance of at most 3, and at most a
// third of its length), or "".
func Nearest(name string, known []string) string {
	best, bestD := "", 0
	for _, k := range known {
		d := distance(strings.ToLower(name), strings.ToLower(k))
		if best == "" || d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" || best == name || bestD > 3 || bestD*3 > max(len(name), 3) {
		return ""
	}
	return best
}

// distance is the Levenshtein distance of a and b, with a swap of two
// neighbouring letters counted as one edit (Damerau's restricted form):
// "inptu" is one slip from "input", not two.
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	rows := make([][]int, len(ra)+1)
	for i := range rows {
		rows[i] = make([]int, len(rb)+1)
		rows[i][0] = i
	}
	for j := range rows[0] {
		rows[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d := min(rows[i-1][j]+1, rows[i][j-1]+1, rows[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d = min(d, rows[i-2][j-2]+1)
			}
			rows[i][j] = d
		}
	}
	return rows[len(ra)][len(rb)]
}

// Undefined says that a kind (output, pipeline) called name is not
// defined, with the nearest defined one and the list of them.
func Undefined(kind, name string, defined []string) string {
	list := "none"
	if len(defined) > 0 {
		list = strings.Join(defined, ", ")
	}
	if near := Nearest(name, defined); near != "" {
		return fmt.Sprintf("%s %q is not defined; did you mean %q? Defined: %s", kind, name, near, list)
	}
	return fmt.Sprintf("%s %q is not defined; defined: %s", kind, name, list)
}
