package config_test

import (
	"context"
	"strings"
	"testing"

	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/plugins"
)

// nullInput and nullOutput are plugins with next to no settings: the
// parser only makes and decodes them.
type nullInput struct {
	Delete  bool     `toml:"delete"`
	Folders []string `toml:"folders"`
}

func (*nullInput) Open(context.Context) (plugin.Session, error) { return nil, nil }

type nullOutput struct{}

func (*nullOutput) Deliver(context.Context, *message.Message, plugin.Delivery) ([]plugin.RecipientResult, error) {
	return nil, nil
}

func testRegistry() *plugins.Registry {
	reg := &plugins.Registry{}
	reg.AddInput("maildir", func() plugin.Input { return &nullInput{} })
	reg.AddOutput("maildir", func() plugin.Output { return &nullOutput{} })
	reg.AddOutput("smtp", func() plugin.Output { return &nullOutput{} })
	return reg
}

const goodConfig = `state_dir = "state"

[[input]]
name = "inbox"
type = "maildir"
pipeline = "main"
schedule = "*/5 * * * *"

[[pipeline]]
name = "main"
scripts = []
outputs = ["archive"]

[[output]]
name = "archive"
type = "maildir"

[[output]]
name = "spam"
type = "maildir"
`

func TestConfigErrorsNameFileLineAndChoices(t *testing.T) {
	cases := []struct {
		name, from, to, want string
	}{
		{"undefined output", `outputs = ["archive"]`, `outputs = ["archiv"]`, `mailflow.toml:12: pipeline "main": output "archiv" is not defined; did you mean "archive"? Defined: archive, spam`},
		{"undefined pipeline", `pipeline = "main"`, `pipeline = "mian"`, `mailflow.toml:6: input "inbox": pipeline "mian" is not defined; did you mean "main"? Defined: main`},
		{"unknown type", "type = \"maildir\"\npipeline", "type = \"pop\"\npipeline", `mailflow.toml:5: input "inbox": unknown type "pop"; known: maildir`},
		{"near type", "type = \"maildir\"\npipeline", "type = \"maildri\"\npipeline", `mailflow.toml:5: input "inbox": unknown type "maildri"; known: maildir; did you mean "maildir"?`},
		{"unknown key", `schedule = "*/5 * * * *"`, "schedule = \"*/5 * * * *\"\npasword = \"x\"", `mailflow.toml:8: unknown key "pasword" in input "inbox"`},
		{"near key", `schedule = "*/5 * * * *"`, "schedule = \"*/5 * * * *\"\ndelte = true", `mailflow.toml:8: unknown key "delte" in input "inbox"; did you mean "delete"?`},
		{"global key in a table", `schedule = "*/5 * * * *"`, "schedule = \"*/5 * * * *\"\nmax_in_flight = 4", `mailflow.toml:8: unknown key "max_in_flight" in input "inbox"; max_in_flight is a key of its own, outside any table: move it above the first [table]`},
		{"wrong type in a table", `schedule = "*/5 * * * *"`, "schedule = \"*/5 * * * *\"\ndelete = \"no\"", `mailflow.toml:8: input "inbox": delete: "no" is text; this key takes true or false, without quotes`},
		{"list for text", `schedule = "*/5 * * * *"`, `schedule = ["*/5 * * * *"]`, `mailflow.toml:7: input "inbox": schedule: ["*/5 * * * *"] is a list; this key takes text in quotes (like "x")`},
		{"wrong type of a global", `state_dir = "state"`, "state_dir = \"state\"\nmax_in_flight = \"ten\"", `mailflow.toml:2: max_in_flight: "ten" is text; this key takes a whole number, without quotes (like 25)`},
		{"unknown global", `state_dir = "state"`, "state_dir = \"state\"\nmax_in_flihgt = 4", `mailflow.toml:2: unknown key "max_in_flihgt"; did you mean "max_in_flight"?`},
		{"misspelt table", "[[input]]", "[[inptu]]", `mailflow.toml:3: unknown table [[inptu]]; did you mean [[input]]?`},
		{"no table", "[[input]]\nname = \"inbox\"\ntype = \"maildir\"\npipeline = \"main\"\nschedule = \"*/5 * * * *\"", "", `mailflow.toml: no [[input]] is defined`},
		{"bad schedule", `schedule = "*/5 * * * *"`, `schedule = "every tuesday"`, `mailflow.toml:7: input "inbox": schedule "every tuesday"`},
		{"toml syntax", `name = "main"`, `name = "main`, `mailflow.toml:10:`},
		{"duplicate", `name = "spam"`, `name = "archive"`, `mailflow.toml:19: output "archive" is defined twice`},
		{"bad duration", `state_dir = "state"`, "state_dir = \"state\"\nscript_timeout = \"soon\"", `mailflow.toml:2: script_timeout: "soon" is not a positive duration, like "1s"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := strings.Replace(goodConfig, c.from, c.to, 1)
			if src == goodConfig {
				t.Fatal("case did not change the config")
			}
			_, err := config.Parse("mailflow.toml", []byte(src), testRegistry())
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("got  %v\nwant %s", err, c.want)
			}
			if n := strings.Count(err.Error(), "\n"); n != 0 {
				t.Fatalf("one mistake, %d more problems reported:\n%v", n, err)
			}
		})
	}
	if _, err := config.Parse("mailflow.toml", []byte(goodConfig), testRegistry()); err != nil {
		t.Fatalf("good config: %v", err)
	}
}

// Every mistake is reported in one go, each at its own line, in the
// order of the file: a person fixes them all before running again. A
// wrong type in the second of two [[input]] tables is at that table's
// line, not the first's.
func TestEveryMistakeAtOnce(t *testing.T) {
	src := `state_dir = "state"
max_in_flight = "many"

[[input]]
name = "a"
type = "maildir"
pipeline = "main"
delete = true

[[input]]
name = "b"
type = "maildri"
pipeline = "main"

[[input]]
name = "c"
type = "maildir"
pipeline = "mian"
delete = "yes"

[[pipeline]]
name = "main"
outputs = ["archive", "nowhere"]

[[output]]
name = "archive"
type = "maildir"
colour = "blue"
`
	cfg, errs := config.Inspect("m.toml", []byte(src), testRegistry(), config.Options{})
	want := []string{
		`m.toml:2: max_in_flight: "many" is text; this key takes a whole number, without quotes (like 25)`,
		`m.toml:12: input "b": unknown type "maildri"; known: maildir; did you mean "maildir"?`,
		`m.toml:18: input "c": pipeline "mian" is not defined; did you mean "main"? Defined: main`,
		`m.toml:19: input "c": delete: "yes" is text; this key takes true or false, without quotes`,
		`m.toml:23: pipeline "main": output "nowhere" is not defined; defined: archive`,
		`m.toml:28: unknown key "colour" in output "archive"`,
	}
	if got := strings.Split(errs.Error(), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// What did decode is there, for "mailflow check" to go on with.
	if cfg == nil || cfg.Input("a") == nil || cfg.Output("archive") == nil || cfg.Pipeline("main") == nil {
		t.Fatalf("the tables without mistakes are missing: %+v", cfg)
	}
	if _, err := config.Parse("m.toml", []byte(src), testRegistry()); err == nil {
		t.Fatal("Parse took a config with mistakes")
	}
}
