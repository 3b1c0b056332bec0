package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailflow/mailflow/connectors/pop3/pop3test"
	"github.com/mailflow/mailflow/connectors/smtp/smtptest"
)

// A config with a dozen mistakes a new user makes (testdata/check): one
// "mailflow check" reports every one, each at its file and line with the
// fix, sorted, and exits 2. Among them what check used to pass and run
// rejected: a Maildir input that is not there, [metrics] listen = "9090",
// a state_dir that cannot be made, a script routing to an output that
// does not exist; and what it used to need: the secrets themselves.
func TestCheckReportsEveryMistakeAtOnce(t *testing.T) {
	dir, _ := filepath.Abs(filepath.Join("testdata", "check"))
	conf := filepath.Join("testdata", "check", "mailflow.toml")
	golden := filepath.Join("testdata", "check.golden")
	r := mailflow(t, "check", "-c", conf)
	got := strings.ReplaceAll(r.stdout, dir, "testdata/check")
	if *update {
		os.WriteFile(golden, []byte(got), 0o644)
	}
	want, _ := os.ReadFile(golden)
	if r.code != exitConfig || got != string(want) {
		t.Fatalf("exit %d (want 2); got\n%s\nwant\n%s\nstderr: %s", r.code, got, want, r.stderr)
	}
	if n := strings.Count(got, "\n"); n < 11 {
		t.Fatalf("%d lines: want ten mistakes and more", n)
	}
	// --no-secrets reads no secret: the unset variable is not a problem.
	r = mailflow(t, "check", "--no-secrets", "-c", conf)
	noSecrets := strings.ReplaceAll(r.stdout, dir, "testdata/check")
	if r.code != exitConfig || strings.Contains(noSecrets, "MAILFLOW_CHECK_TEST_UNSET") || !strings.Contains(noSecrets, "11 problems, 1 warning") {
		t.Fatalf("--no-secrets: exit %d\n%s", r.code, noSecrets)
	}
}

// A good config with its secret in a file: check passes; with
// --no-secrets it passes without the file; with --connect it logs in to
// each server and says so, and a server that refuses the password fails
// the check, naming the input.
func TestCheckSecretsAndConnect(t *testing.T) {
	src, err := pop3test.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := smtptest.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "password"), []byte("p\n"), 0o600)
	conf := filepath.Join(dir, "mailflow.toml")
	os.WriteFile(conf, []byte(fmt.Sprintf(`state_dir = "state"

[[input]]
name = "mailbox"
type = "pop3"
address = %q
tls = "none"
allow_plaintext_auth = true
username = "u"
password_file = "password"
pipeline = "main"

[[pipeline]]
name = "main"
outputs = ["relay"]

[[output]]
name = "relay"
type = "smtp"
address = %q
tls = "none"
to = ["me@example.net"]
`, src.Addr(), dst.Addr())), 0o600)
	if r := mailflow(t, "check", "-c", conf); r.code != 0 || !strings.Contains(r.stdout, ": ok (1 inputs, 1 pipelines, 1 outputs, 0 scripts)") {
		t.Fatalf("check: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r := mailflow(t, "check", "--connect", "-c", conf)
	if r.code != 0 || !strings.Contains(r.stdout, `input "mailbox" (pop3): connected, logged in and out`) || !strings.Contains(r.stdout, `output "relay" (smtp): connected, logged in and out`) {
		t.Fatalf("check --connect: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if len(src.Messages()) != 0 || len(dst.Mails()) != 0 {
		t.Fatal("check --connect moved mail")
	}
	os.WriteFile(filepath.Join(dir, "password"), []byte("wrong\n"), 0o600)
	r = mailflow(t, "check", "--connect", "-c", conf)
	if r.code != exitConfig || !strings.Contains(r.stdout, `input "mailbox" (pop3): FAILED: `) {
		t.Fatalf("check --connect with a wrong password: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	os.Remove(filepath.Join(dir, "password"))
	if r := mailflow(t, "check", "-c", conf); r.code != exitConfig || !strings.Contains(r.stdout, "password_file") {
		t.Fatalf("check without the password file: exit %d\n%s", r.code, r.stdout)
	}
	if r := mailflow(t, "check", "--no-secrets", "-c", conf); r.code != 0 {
		t.Fatalf("check --no-secrets without the password file: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// With no -c, check (like every command that reads a config) finds
// ./mailflow.toml; with none anywhere it says where it looked.
func TestConfigFoundWithoutDashC(t *testing.T) {
	if _, err := os.Stat("/etc/mailflow/mailflow.toml"); err == nil {
		t.Skip("/etc/mailflow/mailflow.toml exists here (an installed package): it would be found")
	}
	dir := t.TempDir()
	maildirJob(t, dir, "")
	os.MkdirAll(filepath.Join(dir, "src", "new"), 0o700)
	os.MkdirAll(filepath.Join(dir, "src", "cur"), 0o700)
	cmd := func(args ...string) result {
		t.Helper()
		t.Chdir(dir)
		return mailflow(t, args...)
	}
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "xdg"))
	t.Setenv("MAILFLOW_CONFIG", "")
	if r := cmd("check"); r.code != 0 || !strings.Contains(r.stdout, "mailflow.toml: ok") {
		t.Fatalf("check in the config's directory: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := cmd("run", "--once"); r.code != 0 || !strings.Contains(r.stdout, "src: fetched=0") {
		t.Fatalf("run --once in the config's directory: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	os.Rename(filepath.Join(dir, "mailflow.toml"), filepath.Join(dir, "elsewhere.toml"))
	r := cmd("check")
	if r.code != exitConfig || !strings.Contains(r.stderr, "looked for mailflow.toml, "+filepath.Join(dir, "xdg", "mailflow", "mailflow.toml")+", /etc/mailflow/mailflow.toml") {
		t.Fatalf("no config anywhere: exit %d\n%s", r.code, r.stderr)
	}
	t.Setenv("MAILFLOW_CONFIG", filepath.Join(dir, "elsewhere.toml"))
	if r := cmd("check"); r.code != 0 {
		t.Fatalf("MAILFLOW_CONFIG: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// run --once names an input whose poll failed, with the reason, instead
// of counts of nothing, and exits 1.
func TestRunOnceSaysWhichInputFailed(t *testing.T) {
	dir := t.TempDir()
	conf := maildirJob(t, dir, "")
	b, _ := os.ReadFile(conf)
	os.WriteFile(conf, append(b, []byte(`
[[input]]
name = "mailbox"
type = "pop3"
address = "127.0.0.1:1"
tls = "none"
allow_plaintext_auth = true
username = "u"
password = "p"
pipeline = "main"
`)...), 0o600)
	os.MkdirAll(filepath.Join(dir, "src", "new"), 0o700)
	os.MkdirAll(filepath.Join(dir, "src", "cur"), 0o700)
	r := mailflow(t, "run", "--once", "-c", conf)
	if r.code != exitFailed || !strings.Contains(r.stdout, "mailbox: FAILED: ") || !strings.Contains(r.stdout, "src: fetched=0") {
		t.Fatalf("exit %d (want 1)\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("%s", r.stdout)
}
