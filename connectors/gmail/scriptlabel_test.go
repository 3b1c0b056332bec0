package gmail_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// A script's msg:label reaches Gmail as labels, made where missing: a
// name that is not ASCII (written into the field as an encoded word, by
// msg:label or set_header) by its own name, a nested one with its
// parent, and several calls adding up; the field never reaches Gmail.
func TestScriptLabelsReachGmailByName(t *testing.T) {
	r := newEngineRig(t, time.Hour, "", nil)
	os.WriteFile(filepath.Join(r.dir, "label.lua"), []byte(`
function filter(msg)
  msg:set_header("X-Mailflow-Labels", "Privé")
  msg:label("Geschäftlich")
  msg:label("Clients/Acme", "Work")
end
`), 0o600)
	if _, err := r.e.Reload(); err != nil {
		t.Fatal(err)
	}
	r.seed(1, 3, 200)
	r.runUntil(t, 5, 20*time.Second)
	for _, m := range r.fake.Messages() {
		var names []string
		for _, l := range r.fake.Labels() {
			if slices.Contains(m.LabelIDs, l.ID) && l.Type == "user" {
				names = append(names, l.Name)
			}
		}
		slices.Sort(names)
		if want := []string{"Clients/Acme", "Geschäftlich", "Imported", "Privé", "Work"}; !slices.Equal(names, want) {
			t.Errorf("%s: labels %q; want %q", m.MessageID, names, want)
		}
		if strings.Contains(strings.ToLower(string(m.Raw)), "x-mailflow-labels") {
			t.Errorf("%s: the labels field reached Gmail", m.MessageID)
		}
	}
	if len(r.fake.Messages()) != 2 || r.fake.LabelID("Clients") == "" {
		t.Fatalf("%d messages; labels %v", len(r.fake.Messages()), r.fake.Labels())
	}
}
