package main

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files (the example scripts', check's)")

// TestExampleScriptsGolden runs `mailflow test` with each example script on
// the example messages and compares what it prints with a golden file, so
// a change to a script, or to the script API, that changes what the
// examples do shows up as a diff. Run with -update after a deliberate change.
func TestExampleScriptsGolden(t *testing.T) {
	dir := filepath.Join("..", "..", "examples", "scripts")
	scripts, _ := filepath.Glob(filepath.Join(dir, "*.lua"))
	if len(scripts) < 5 {
		t.Fatalf("found %d example scripts, want at least 5", len(scripts))
	}
	msgs := filepath.Join(dir, "testdata", "messages")
	now := regexp.MustCompile(`(Resent-Date: ).*`)
	for _, script := range scripts {
		name := strings.TrimSuffix(filepath.Base(script), ".lua")
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			if code := run([]string{"test", "--log-level", "error", "--script-lib", filepath.Join(dir, "lib"), "--script", script, msgs}, &out, io.Discard); code != 0 {
				t.Fatalf("exit %d\n%s", code, out.String())
			}
			got := now.ReplaceAll(out.Bytes(), []byte("${1}<now>"))
			got = bytes.ReplaceAll(got, []byte(filepath.ToSlash(msgs)+"/"), nil)
			golden := filepath.Join(dir, "testdata", "golden", name+".txt")
			if *update {
				os.MkdirAll(filepath.Dir(golden), 0o755)
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./cmd/mailflow -run Golden -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s changed what it does; got:\n%s\nwant:\n%s", name, got, want)
			}
		})
	}
}
