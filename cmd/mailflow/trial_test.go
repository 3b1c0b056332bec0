package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// bodyScript shows each message's body in a header it adds, and breaks on
// a message whose subject is "bad", so that the output tells which bytes
// each message had and a broken one shows in the exit code.
const bodyScript = `function filter(msg)
  if msg:header("Subject") == "bad" then error("broken on purpose") end
  local text = msg:text():gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
  msg:set_header("X-Body", text)
end
`

// An mboxrd file: a body line that starts "From " is quoted as ">From ",
// one that started ">From " as ">>From ".
const threeMbox = `From alice@example.org Mon Jan  1 00:00:00 2024
From: Alice <alice@example.org>
Subject: one

first
>From the start of a line
>>From quoted before

From bob@example.org Tue Jan  2 00:00:00 2024
From: Bob <bob@example.org>
Subject: bad

second

From carol@example.org Wed Jan  3 00:00:00 2024
From: Carol <carol@example.org>
Subject: three

third
`

func eml(subject, body string) string {
	return "From: someone@example.org\nSubject: " + subject + "\n\n" + body + "\n"
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// mailflowIn is mailflow with stdin, run in dir (paths in the output are
// then relative).
func mailflowIn(t *testing.T, dir, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir, cmd.Stdin = dir, strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, out.String(), errb.String()}
}

// named are the "== NAME" lines of mailflow test's output, and each
// message's X-Body as the script saw it ("" for one that broke).
func named(out string) (names, bodies []string) {
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "== "):
			names = append(names, strings.TrimPrefix(line, "== "))
			bodies = append(bodies, "")
		case strings.HasPrefix(line, "     + X-Body: "):
			bodies[len(bodies)-1] = strings.TrimPrefix(line, "     + X-Body: ")
		}
	}
	return names, bodies
}

// "mailflow test" reads each message of an mbox (its From_ lines and
// quoting taken off), a Maildir's cur/ and new/, every file under a
// directory (an mbox among them split too), or standard input, and names
// each message; the exit code says whether any broke. It used to read an
// mbox as one malformed message, walk a Maildir's tmp/ and dovecot files,
// and refuse "-".
func TestTestReadsMboxMaildirDirectoryAndStdin(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"body.lua":   bodyScript,
		"three.mbox": threeMbox,
		"good.mbox":  strings.Replace(threeMbox, "Subject: bad", "Subject: two", 1),
		// A Maildir, with what a mail server leaves beside the mail.
		"md/cur/1.a:2,S":       eml("cur", "in cur"),
		"md/new/2.b":           eml("new", "in new"),
		"md/tmp/3.c":           eml("tmp", "still being delivered"),
		"md/dovecot-uidlist":   "3 V1 N4\n",
		"md/.Sent/cur/4.d:2,S": eml("sent", "a Maildir++ folder"),
		"md/.Sent/tmp/5.e":     eml("tmp", "still being delivered"),
		// A directory of files, an mbox among them.
		"dir/a.eml":     eml("a", "plain a"),
		"dir/sub/b.eml": eml("b", "plain b"),
		"dir/c.mbox":    threeMbox[:strings.Index(threeMbox, "From bob")] + "From x@example.org Thu Jan  4 00:00:00 2024\nSubject: four\n\nfour\n",
		"dir/.hidden":   "not mail",
		"empty/.keep":   "",
	})
	first := "first From the start of a line >From quoted before"
	cases := []struct {
		name   string
		args   []string
		stdin  string
		code   int
		names  []string
		bodies []string
	}{
		{"mbox", []string{"three.mbox"}, "", 1,
			[]string{"three.mbox #1 (From alice@example.org Mon Jan  1 00:00:00 2024)", "three.mbox #2 (From bob@example.org Tue Jan  2 00:00:00 2024)", "three.mbox #3 (From carol@example.org Wed Jan  3 00:00:00 2024)"},
			[]string{first, "", "third"}},
		{"mbox where nothing breaks", []string{"good.mbox"}, "", 0,
			[]string{"good.mbox #1 (From alice@example.org Mon Jan  1 00:00:00 2024)", "good.mbox #2 (From bob@example.org Tue Jan  2 00:00:00 2024)", "good.mbox #3 (From carol@example.org Wed Jan  3 00:00:00 2024)"},
			[]string{first, "second", "third"}},
		{"Maildir", []string{"md"}, "", 0,
			[]string{"md/.Sent/cur/4.d:2,S", "md/cur/1.a:2,S", "md/new/2.b"},
			[]string{"a Maildir++ folder", "in cur", "in new"}},
		{"directory", []string{"dir"}, "", 0,
			[]string{"dir/a.eml", "dir/c.mbox #1 (From alice@example.org Mon Jan  1 00:00:00 2024)", "dir/c.mbox #2 (From x@example.org Thu Jan  4 00:00:00 2024)", "dir/sub/b.eml"},
			[]string{"plain a", first, "four", "plain b"}},
		{"stdin, an mbox", []string{"-"}, threeMbox, 1,
			[]string{"stdin #1 (From alice@example.org Mon Jan  1 00:00:00 2024)", "stdin #2 (From bob@example.org Tue Jan  2 00:00:00 2024)", "stdin #3 (From carol@example.org Wed Jan  3 00:00:00 2024)"},
			[]string{first, "", "third"}},
		{"stdin, one message", []string{"-"}, eml("one", "just one"), 0,
			[]string{"stdin"}, []string{"just one"}},
		{"a file and stdin", []string{"dir/a.eml", "-"}, eml("one", "just one"), 0,
			[]string{"dir/a.eml", "stdin"}, []string{"plain a", "just one"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := mailflowIn(t, dir, c.stdin, append([]string{"test", "--script", "body.lua"}, c.args...)...)
			names, bodies := named(r.stdout)
			if r.code != c.code || !slices.Equal(names, c.names) || !slices.Equal(bodies, c.bodies) {
				t.Fatalf("exit %d, want %d\nnames  %q\nwant   %q\nbodies %q\nwant   %q\n%s%s", r.code, c.code, names, c.names, bodies, c.bodies, r.stdout, r.stderr)
			}
			if summary := fmt.Sprintf("\n%d messages: ", len(c.names)); strings.Contains(r.stdout, summary) != (len(c.names) > 1) {
				t.Fatalf("a summary line for more than one message, and only then:\n%s", r.stdout)
			}
		})
	}

	// The summary counts the verdicts; a broken message names its script.
	r := mailflowIn(t, dir, "", "test", "--script", "body.lua", "three.mbox")
	if !strings.HasSuffix(r.stdout, "\n3 messages: 2 keep, 1 broke\n") || !strings.Contains(r.stdout, "script body.lua broke") {
		t.Fatalf("summary:\n%s", r.stdout)
	}

	// Nothing to try, or "-" twice, is bad usage.
	for _, args := range [][]string{{"empty"}, {"-", "-"}, {"missing.eml"}} {
		r := mailflowIn(t, dir, "", append([]string{"test", "--script", "body.lua"}, args...)...)
		if r.code != exitConfig || r.stderr == "" {
			t.Errorf("test %s: exit %d, stderr %q; want 2 and a reason", strings.Join(args, " "), r.code, r.stderr)
		}
	}
}
