package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailflow/mailflow/connectors/oauth/oauthtest"
)

// mailflow auth login, as a person runs it: the command prints an address,
// a browser-less client opens it and follows the provider's redirect back
// to the command's loopback listener; the tokens land in
// state/tokens/NAME.json (0600); auth status shows them; the device flow
// works too; auth logout removes them.
func TestAuthLoginStatusLogout(t *testing.T) {
	as, err := oauthtest.New("me@example.com", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "mailflow.toml")
	os.WriteFile(conf, fmt.Appendf(nil, `state_dir = "state"
[[input]]
name = "gmail"
type = "pop3"
address = "127.0.0.1:995"
username = "me@example.com"
auth = "oauth2"
oauth2_provider = "custom"
client_id = "mailflow-test"
auth_url = "%[1]s/authorize"
token_url = "%[1]s/token"
device_url = "%[1]s/device"
scopes = ["mail"]
pipeline = "main"
[[pipeline]]
name = "main"
outputs = ["out"]
[[output]]
name = "out"
type = "maildir"
path = "out"
`, as.URL), 0o600)

	if r := mailflow(t, "auth", "status", "-c", conf); r.code != 0 || !strings.Contains(r.stdout, "not logged in") {
		t.Fatalf("status before: %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	cmd := exec.Command(binary, "auth", "login", "-c", conf, "gmail")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var said strings.Builder
	for sc.Scan() {
		line := sc.Text()
		said.WriteString(line + "\n")
		if u := strings.TrimSpace(line); strings.HasPrefix(u, as.URL+"/authorize?") {
			go func() {
				if resp, err := http.Get(u); err == nil {
					resp.Body.Close()
				}
			}()
		}
	}
	if err := cmd.Wait(); err != nil || !strings.Contains(said.String(), "gmail: logged in as me@example.com") {
		t.Fatalf("login: %v\n%s", err, said.String())
	}
	path := filepath.Join(dir, "state", "tokens", "gmail.json")
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", st, err)
	}
	r := mailflow(t, "auth", "status", "-c", conf)
	if r.code != 0 || !strings.Contains(r.stdout, "me@example.com") || !strings.Contains(r.stdout, "expires in") || strings.Contains(r.stdout, "not logged in") {
		t.Fatalf("status after login: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	b, _ := os.ReadFile(path)
	for _, line := range strings.Split(r.stdout+r.stderr, "\n") {
		for _, secret := range strings.Fields(string(b)) {
			if len(secret) > 20 && strings.Contains(line, strings.Trim(secret, `",`)) {
				t.Fatalf("status shows a token: %s", line)
			}
		}
	}

	// The device flow, on a machine without a browser.
	os.Remove(path)
	cmd = exec.Command(binary, "auth", "login", "--device", "-c", conf, "gmail")
	out, _ = cmd.StdoutPipe()
	cmd.Start()
	sc = bufio.NewScanner(out)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 1 {
			as.Approve(f[0])
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("device login: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal("no token after the device login")
	}

	if r := mailflow(t, "auth", "logout", "-c", conf, "gmail"); r.code != 0 {
		t.Fatalf("logout: %d %s", r.code, r.stderr)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("the token file is still there after logout")
	}
	if r := mailflow(t, "auth", "login", "-c", conf, "nosuch"); r.code != 2 || !strings.Contains(r.stderr, `no input or output "nosuch"`) {
		t.Fatalf("unknown name: %d %s", r.code, r.stderr)
	}
}
