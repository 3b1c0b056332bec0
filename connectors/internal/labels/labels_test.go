package labels

import "testing"

func TestKeywordIsAnAtom(t *testing.T) {
	for label, want := range map[string]string{
		"Work":            "Work",
		" Work/2024 ":     "Work/2024",
		"Reçus":           "Re_us",
		"a b (c) {d} %*x": "a_b__c___d}___x",
		`q"u\o]te`:        "q_u_o_te",
	} {
		if got := Keyword(label); got != want {
			t.Errorf("Keyword(%q) = %q, want %q", label, got, want)
		}
	}
}
