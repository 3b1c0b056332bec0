package all_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/plugins"
	_ "github.com/mailflow/mailflow/plugins/all"
)

// sampler is what every connector offers: its documented sample config.
type sampler interface{ SampleConfig() string }

// Every connector's sample config, put in a config of its own, passes what
// "mailflow check" does: the config is read strictly (a key the plugin no
// longer has is an error), and every plugin provisioned and initialised.
// A sample that makes the check warn (a key kept only for old configs) is
// stale too.
func TestSampleConfigsPassCheck(t *testing.T) {
	reg := plugins.Default
	for _, kind := range []string{"input", "output"} {
		types := reg.InputTypes()
		if kind == "output" {
			types = reg.OutputTypes()
		}
		for _, typ := range types {
			t.Run(kind+"/"+typ, func(t *testing.T) {
				var p any
				if kind == "input" {
					p, _ = reg.NewInput(typ)
				} else {
					p, _ = reg.NewOutput(typ)
				}
				s, ok := p.(sampler)
				if !ok || strings.TrimSpace(s.SampleConfig()) == "" {
					t.Fatalf("%s %q has no sample config", kind, typ)
				}
				checkSample(t, kind, typ, s.SampleConfig())
			})
		}
	}
}

// sampleTables is the part of a sample this test reads to complete it.
type sampleTables struct {
	Input  []map[string]any `toml:"input"`
	Output []map[string]any `toml:"output"`
}

// checkSample completes sample into a config (a state_dir; a Maildir input
// or output where the sample has none; the pipelines its inputs name,
// leading to every output; its password_env variables set), then loads
// and builds it as "mailflow check" does.
func checkSample(t *testing.T, kind, typ, sample string) {
	var tables sampleTables
	if _, err := toml.Decode(sample, &tables); err != nil {
		t.Fatalf("the sample is no TOML: %v", err)
	}
	own := tables.Input
	if kind == "output" {
		own = tables.Output
	}
	found := false
	for _, tb := range own {
		found = found || tb["type"] == typ
	}
	if !found {
		t.Fatalf("the sample has no [[%s]] of type %q", kind, typ)
	}
	var extra strings.Builder
	var outputs []string
	for _, tb := range tables.Output {
		outputs = append(outputs, fmt.Sprintf("%q", tb["name"]))
	}
	if len(tables.Output) == 0 {
		extra.WriteString("\n[[output]]\nname = \"sample-out\"\ntype = \"maildir\"\npath = \"out\"\n")
		outputs = append(outputs, `"sample-out"`)
	}
	pipelines := map[string]bool{}
	for _, tb := range tables.Input {
		name, _ := tb["pipeline"].(string)
		pipelines[name] = true
	}
	if len(tables.Input) == 0 {
		extra.WriteString("\n[[input]]\nname = \"sample-in\"\ntype = \"maildir\"\npath = \"in\"\npipeline = \"main\"\n")
		pipelines["main"] = true
	}
	for name := range pipelines {
		fmt.Fprintf(&extra, "\n[[pipeline]]\nname = %q\noutputs = [%s]\n", name, strings.Join(outputs, ", "))
	}
	for _, tb := range append(tables.Input, tables.Output...) {
		if v, ok := tb["password_env"].(string); ok {
			t.Setenv(v, "sample-secret")
		}
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "mailflow.toml")
	src := "state_dir = \"state\"\n\n" + sample + extra.String()
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, plugins.Default)
	if err != nil {
		t.Fatalf("%v\n--- config:\n%s", err, src)
	}
	var log bytes.Buffer
	s, err := engine.Build(cfg, plugins.Default, slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelWarn})), nil)
	if err != nil {
		t.Fatalf("%v\n--- config:\n%s", err, src)
	}
	s.Close()
	if log.Len() > 0 {
		t.Fatalf("the check warned:\n%s", log.String())
	}
}
