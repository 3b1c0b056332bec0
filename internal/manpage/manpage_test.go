package manpage

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestWrite(t *testing.T) {
	root := &cobra.Command{Use: "tool", Short: "Does things", Version: "v1.2.0",
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true}}
	root.AddCommand(
		&cobra.Command{Use: "run", Short: "Runs it", Run: func(*cobra.Command, []string) {}},
		&cobra.Command{Use: "secret", Short: "Not shown", Hidden: true, Run: func(*cobra.Command, []string) {}},
		Command())
	dir := filepath.Join(t.TempDir(), "man", "man1") // made by Write
	t.Setenv("SOURCE_DATE_EPOCH", "1793534400")      // 2026-11-01
	root.SetArgs([]string{"man", dir})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "tool-run.1 tool.1" {
		t.Fatalf("pages: %s (hidden commands have none)", got)
	}
	page, err := os.ReadFile(filepath.Join(dir, "tool-run.1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`.TH "TOOL-RUN" "1" "Nov 2026" "tool v1.2.0" "tool manual"`, "Runs it"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("tool-run.1 lacks %q:\n%s", want, page)
		}
	}
}
