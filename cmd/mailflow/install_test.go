package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The things an install puts beside the binary (dist/build-deb): what
// "mailflow version" says of its source, the shell completions, the man pages.

// TestVersionNamesTheCommit builds mailflow as dist/build-deb does (VCS
// stamping on, whatever GOFLAGS says) plus a version given at link time,
// and checks that "mailflow version" prints both: the version asked for,
// and the commit checked out.
func TestVersionNamesTheCommit(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git: cannot know which commit the binary should name")
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout (a source archive?), so Go stamps no commit: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "mailflow")
	args := []string{"build", "-buildvcs=true", "-ldflags=-X main.version=9.8.7-test", "-o", bin}
	if raceEnabled {
		args = append(args, "-race") // as TestMain's build: the compiled packages are reused
	}
	if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
		t.Fatalf("go build -buildvcs=true: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("mailflow version: %v", err)
	}
	lines := strings.Split(string(out), "\n")
	if lines[0] != "mailflow 9.8.7-test" {
		t.Errorf("first line %q, want the -X main.version given", lines[0])
	}
	if want := "commit  " + strings.TrimSpace(string(head)); !strings.HasPrefix(lines[1], want) {
		t.Errorf("second line %q, want it to start %q", lines[1], want)
	}
	if !strings.Contains(string(out), "\ndate    20") {
		t.Errorf("no commit date:\n%s", out)
	}
	// --version is the first line only, as before.
	if out, err := exec.Command(bin, "--version").Output(); err != nil || string(out) != "mailflow 9.8.7-test\n" {
		t.Errorf("--version: %q %v", out, err)
	}
}

func TestCompletion(t *testing.T) {
	if r := mailflow(t, "--help"); !strings.Contains(r.stdout, "\n  completion ") {
		t.Errorf("--help does not list completion:\n%s", r.stdout)
	}
	for shell, want := range map[string]string{
		"bash": "__start_mailflow",
		"zsh":  "#compdef mailflow",
		"fish": "complete -c mailflow",
	} {
		r := mailflow(t, "completion", shell)
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("completion %s: exit %d, no %q\n%s", shell, r.code, want, r.stderr)
		}
	}
	// The bash script parses, and completes the commands.
	bash, err := exec.LookPath("bash")
	if err != nil {
		return
	}
	script := filepath.Join(t.TempDir(), "mailflow.bash")
	if err := os.WriteFile(script, []byte(mailflow(t, "completion", "bash").stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bash, "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n on the completion script: %v\n%s", err, out)
	}
	if r := mailflow(t, "__complete", "qua"); !strings.HasPrefix(r.stdout, "quarantine\t") {
		t.Errorf("completing \"qua\": %q", r.stdout)
	}
}

func TestManWritesPages(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "man1") // does not exist yet
	if r := mailflow(t, "man", dir); r.code != 0 {
		t.Fatalf("man: exit %d\n%s", r.code, r.stderr)
	}
	for _, page := range []string{"mailflow.1", "mailflow-run.1", "mailflow-check.1", "mailflow-migrate.1", "mailflow-quarantine-list.1"} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil {
			t.Error(err)
			continue
		}
		title := strings.ToUpper(strings.TrimSuffix(page, ".1"))
		if !strings.HasPrefix(string(b), `.nh`) || !strings.Contains(string(b), `.TH "`+title+`" "1"`) {
			t.Errorf("%s is not a man page of section 1:\n%.300s", page, b)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "mailflow-man.1")); err == nil {
		t.Error("the hidden man command got a page")
	}
	if r := mailflow(t, "man"); r.code != 2 {
		t.Errorf("man without DIR: exit %d, want 2", r.code)
	}
}
