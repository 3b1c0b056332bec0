package trial

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeMbox splits at every line that starts "From " (the engine's tests
// import no connector; cmd/mailflow's test reads real mboxes), and fails
// at a message whose From_ line says "broken".
var fakeMbox = Mbox{
	Is: func(head []byte) bool { return bytes.HasPrefix(head, []byte("From ")) },
	Read: func(r io.Reader) func() (string, io.Reader, error) {
		data, err := io.ReadAll(r)
		parts := strings.Split(string(data), "\nFrom ")
		return func() (string, io.Reader, error) {
			switch {
			case err != nil:
				return "", nil, err
			case len(parts) == 0 || parts[0] == "":
				return "", nil, io.EOF
			}
			p := strings.TrimPrefix(parts[0], "From ")
			parts = parts[1:]
			from, body, _ := strings.Cut(p, "\n")
			if strings.Contains(from, "broken") {
				err = errors.New("mbox: at byte 42: broken")
				return "", nil, err
			}
			return "From " + from, strings.NewReader(body), nil
		}
	},
}

func collect(t *testing.T, args []string, stdin string) (names, ids, bodies []string) {
	t.Helper()
	for m := range Messages(args, strings.NewReader(stdin), fakeMbox) {
		names, ids = append(names, m.Name), append(ids, m.ID)
		if m.Err != nil {
			bodies = append(bodies, "error: "+m.Err.Error())
			continue
		}
		b, _ := io.ReadAll(m.R)
		bodies = append(bodies, strings.TrimSpace(string(b)))
	}
	return names, ids, bodies
}

func TestMessagesOfFilesMaildirsMboxesAndStdin(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{
		"one.eml":           "Subject: one\n\nbody one",
		"box":               "From a@x Mon Jan  1 00:00:00 2024\nA\n\nFrom b@x Mon Jan  1 00:00:00 2024\nB\n",
		"bad.mbox":          "From a@x Mon Jan  1 00:00:00 2024\nA\n\nFrom broken\nB\n\nFrom c@x\nC\n",
		"md/cur/1:2,S":      "cur",
		"md/new/2":          "new",
		"md/tmp/3":          "tmp",
		"md/subscriptions":  "INBOX",
		"md/.Sent/cur/4":    "sent",
		"md/.Sent/new/.5":   "dot file",
		"plain/new/6.eml":   "a plain directory's new/",
		"plain/7.eml":       "beside it",
		"plain/.DS_Store":   "dot file",
		"empty/.keep":       "",
		"deep/er/still/9.x": "deep",
	} {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(data), 0o644)
	}
	in := func(ps ...string) []string {
		for i, p := range ps {
			ps[i] = filepath.Join(dir, p)
		}
		return ps
	}
	cases := []struct {
		name               string
		args               []string
		stdin              string
		names, ids, bodies []string
	}{
		{"a file", in("one.eml"), "", in("one.eml"), []string{"one.eml"}, []string{"Subject: one\n\nbody one"}},
		{"an mbox", in("box"), "", in("box #1 (From a@x Mon Jan  1 00:00:00 2024)", "box #2 (From b@x Mon Jan  1 00:00:00 2024)"),
			[]string{"box#1", "box#2"}, []string{"A", "B"}},
		{"an mbox that breaks, then the next argument", in("bad.mbox", "one.eml"), "",
			in("bad.mbox #1 (From a@x Mon Jan  1 00:00:00 2024)", "bad.mbox #2", "one.eml"),
			[]string{"bad.mbox#1", "", "one.eml"}, []string{"A", "error: mbox: at byte 42: broken", "Subject: one\n\nbody one"}},
		{"a Maildir", in("md"), "", in("md/.Sent/cur/4", "md/cur/1:2,S", "md/new/2"),
			[]string{"4", "1:2,S", "2"}, []string{"sent", "cur", "new"}},
		{"a plain directory", in("plain"), "", in("plain/7.eml", "plain/new/6.eml"),
			[]string{"7.eml", "6.eml"}, []string{"beside it", "a plain directory's new/"}},
		{"deep", in("deep"), "", in("deep/er/still/9.x"), []string{"9.x"}, []string{"deep"}},
		{"an empty directory", in("empty"), "", nil, nil, nil},
		{"stdin, one message", []string{"-"}, "Subject: s\n\nstdin", []string{"stdin"}, []string{"stdin"}, []string{"Subject: s\n\nstdin"}},
		{"stdin, an mbox", []string{"-"}, "From a@x\nA\n\nFrom b@x\nB\n", []string{"stdin #1 (From a@x)", "stdin #2 (From b@x)"},
			[]string{"stdin#1", "stdin#2"}, []string{"A", "B"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			names, ids, bodies := collect(t, c.args, c.stdin)
			if !slices.Equal(names, c.names) || !slices.Equal(ids, c.ids) || !slices.Equal(bodies, c.bodies) {
				t.Fatalf("names %q\nwant  %q\nids   %q\nwant  %q\nbodies %q\nwant   %q", names, c.names, ids, c.ids, bodies, c.bodies)
			}
		})
	}

	// A consumer that stops early stops the reading.
	n := 0
	for range Messages(in("box", "one.eml"), nil, fakeMbox) {
		if n++; n == 1 {
			break
		}
	}
	if n != 1 {
		t.Fatal("the iterator went on after its consumer stopped")
	}

	if err := Check(in("one.eml", "md")); err != nil {
		t.Fatal(err)
	}
	if err := Check([]string{"-", "-"}); err == nil {
		t.Fatal(`"-" twice was taken`)
	}
	if err := Check(in("missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a missing file: %v", err)
	}
}
