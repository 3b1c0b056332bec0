package endpoint

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSecretsFromEnvAndFile(t *testing.T) {
	t.Setenv("MF_TEST_PW", "from-env")
	file := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(file, []byte("from-file\n"), 0o600)
	if v, err := ResolveSecret("password", "", "MF_TEST_PW", ""); err != nil || v != "from-env" {
		t.Fatalf("env: %q %v", v, err)
	}
	if v, err := ResolveSecret("password", "", "", file); err != nil || v != "from-file" {
		t.Fatalf("file: %q %v", v, err)
	}
	if _, err := ResolveSecret("password", "x", "MF_TEST_PW", ""); err == nil {
		t.Fatal("two sources must be an error")
	}
	if _, err := ResolveSecret("password", "", "MF_TEST_UNSET_VAR", ""); err == nil {
		t.Fatal("an unset variable must be an error")
	}
}
