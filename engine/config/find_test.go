package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailflow/mailflow/engine/config"
)

// With no -c, the config is the first of $MAILFLOW_CONFIG,
// ./mailflow.toml, $XDG_CONFIG_HOME/mailflow/mailflow.toml and
// /etc/mailflow/mailflow.toml that exists; none found names every place.
func TestFindLooksWhereFetchmailUsersExpect(t *testing.T) {
	if _, err := os.Stat("/etc/mailflow/mailflow.toml"); err == nil {
		t.Skip("/etc/mailflow/mailflow.toml exists here (an installed package): it would be found last")
	}
	dir := t.TempDir()
	t.Chdir(dir)
	xdg := filepath.Join(dir, "xdg")
	t.Setenv("XDG_CONFIG_HOME", xdg)
	t.Setenv("MAILFLOW_CONFIG", "")
	_, err := config.Find()
	if err == nil || !strings.Contains(err.Error(), "looked for mailflow.toml, "+filepath.Join(xdg, "mailflow", "mailflow.toml")+", /etc/mailflow/mailflow.toml") {
		t.Fatalf("nothing to find: %v", err)
	}
	os.MkdirAll(filepath.Join(xdg, "mailflow"), 0o700)
	os.WriteFile(filepath.Join(xdg, "mailflow", "mailflow.toml"), nil, 0o600)
	if got, err := config.Find(); err != nil || got != filepath.Join(xdg, "mailflow", "mailflow.toml") {
		t.Fatalf("XDG: %q %v", got, err)
	}
	os.WriteFile("mailflow.toml", nil, 0o600)
	if got, err := config.Find(); err != nil || got != "mailflow.toml" {
		t.Fatalf("./mailflow.toml comes first: %q %v", got, err)
	}
	t.Setenv("MAILFLOW_CONFIG", filepath.Join(dir, "other.toml"))
	if _, err := config.Find(); err == nil || !strings.Contains(err.Error(), "MAILFLOW_CONFIG names") {
		t.Fatalf("a MAILFLOW_CONFIG naming no file: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "other.toml"), nil, 0o600)
	if got, err := config.Find(); err != nil || got != filepath.Join(dir, "other.toml") {
		t.Fatalf("MAILFLOW_CONFIG comes first: %q %v", got, err)
	}
}
