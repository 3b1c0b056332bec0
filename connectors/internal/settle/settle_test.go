package settle

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestRemove(t *testing.T) {
	yes, no := true, false
	cases := []struct {
		name      string
		onSettled string
		delete    *bool
		remove    bool
		err       string // a part of the error; "" for none
		warning   string // a part of the warning; "" for none
	}{
		{"default", "", nil, true, "", ""},
		{"delete", "delete", nil, true, "", ""},
		{"keep", "keep", nil, false, "", ""},
		{"unknown", "move:Archive", nil, false, `on_settled must be "delete" or "keep", not "move:Archive"`, ""},
		{"old key, true", "", &yes, true, "", `delete = true is deprecated; write on_settled = \"delete\" instead`},
		{"old key, false", "", &no, false, "", `delete = false is deprecated; write on_settled = \"keep\" instead`},
		{"both", "keep", &yes, false, "not the old delete as well", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var log bytes.Buffer
			remove, err := Remove(c.onSettled, c.delete, slog.New(slog.NewTextHandler(&log, nil)))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("want an error with %q, got %v", c.err, err)
				}
				return
			}
			if err != nil || remove != c.remove {
				t.Fatalf("remove %v %v, want %v", remove, err, c.remove)
			}
			if c.warning == "" && log.Len() > 0 || !strings.Contains(log.String(), c.warning) {
				t.Fatalf("log %q, want %q", log.String(), c.warning)
			}
		})
	}
}
