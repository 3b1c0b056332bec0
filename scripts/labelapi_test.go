package scripts

import (
	"context"
	"mime"
	"strings"
	"testing"

	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
)

// msg:label adds a field of its own per call, beside the one the message
// came with (which it leaves as it was), one label a name, non-ASCII
// names as encoded words that decode back to the name.
func TestLabelAddsAFieldOfItsOwnPerCall(t *testing.T) {
	s := load(t, `function filter(msg)
  msg:label("Work")
  msg:label(" Clients/Acme ", "Geschäftlich")
end`, plugin.ScriptLimits{})
	m := mailWith("l1", "X-Mailflow-Labels: TRASH", "From: a@example.org")
	if _, err := s.Filter(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	values := m.Header.Values("X-Mailflow-Labels")
	if len(values) != 3 || values[2] != "TRASH" || values[1] != "Work" {
		t.Fatalf("fields %q; want the script's two on top of the message's own, which stays as it was", values)
	}
	var names []string
	for _, l := range strings.Split(values[0], ",") {
		d, err := new(mime.WordDecoder).DecodeHeader(strings.TrimSpace(l))
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, d)
	}
	if strings.Join(names, "|") != "Clients/Acme|Geschäftlich" || !isASCII(values[0]) {
		t.Fatalf("field %q decodes to %q; want Clients/Acme and Geschäftlich, in ASCII", values[0], names)
	}
	if !m.HeaderChanged() {
		t.Fatal("the header is not marked changed: an output would send the original")
	}
}

// What cannot be one label, or one header line, fails the script: the
// message is quarantined as it came, never labelled wrongly.
func TestLabelRefusesWhatIsNotOneLabel(t *testing.T) {
	for name, call := range map[string]string{
		"no name":   `msg:label()`,
		"empty":     `msg:label("  ")`,
		"comma":     `msg:label("Work, Home")`,
		"line feed": `msg:label("Work\r\nBcc: x@example.org")`,
		"not text":  `msg:label({})`,
		"too long":  `msg:label(string.rep("x", 1200))`,
	} {
		t.Run(name, func(t *testing.T) {
			s := load(t, "function filter(msg) "+call+" end", plugin.ScriptLimits{})
			m := mailWith("l2", "From: a@example.org")
			if _, err := s.Filter(context.Background(), m); err == nil || !strings.Contains(err.Error(), "label") {
				t.Fatalf("error %v; want msg:label's", err)
			}
			if m.Header.Has("X-Mailflow-Labels") {
				t.Fatalf("labelled all the same: %q", m.Header.Values("X-Mailflow-Labels"))
			}
		})
	}
	// A header that could not be parsed is not rewritten.
	s := load(t, `function filter(msg) msg:label("Work") end`, plugin.ScriptLimits{})
	m := message.New([]byte("no header here\r\n\r\nbody\r\n"), message.Source{Input: "in", ID: "x"})
	if _, err := s.Filter(context.Background(), m); err == nil {
		t.Fatal("a message whose header did not parse was labelled")
	}
}
