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

// nullInput and nullOutput are plugins with no settings: the parser only
// makes and decodes them.
type nullInput struct{}

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
		{"undefined output", `outputs = ["archive"]`, `outputs = ["archiv"]`, `mailflow.toml:12: output "archiv" is not defined; defined: archive, spam`},
		{"undefined pipeline", `pipeline = "main"`, `pipeline = "mian"`, `mailflow.toml:6: pipeline "mian" is not defined; defined: main`},
		{"unknown type", "type = \"maildir\"\npipeline", "type = \"pop\"\npipeline", `mailflow.toml:5: input "inbox": unknown type "pop"; known: maildir`},
		{"unknown key", `schedule = "*/5 * * * *"`, "schedule = \"*/5 * * * *\"\npasword = \"x\"", `mailflow.toml:8: unknown key "pasword" in [input]`},
		{"bad schedule", `schedule = "*/5 * * * *"`, `schedule = "every tuesday"`, `mailflow.toml:7: input "inbox": schedule "every tuesday"`},
		{"toml syntax", `name = "main"`, `name = "main`, `mailflow.toml:10:`},
		{"duplicate", `name = "spam"`, `name = "archive"`, `mailflow.toml:19: output "archive" is defined twice`},
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
		})
	}
	if _, err := config.Parse("mailflow.toml", []byte(goodConfig), testRegistry()); err != nil {
		t.Fatalf("good config: %v", err)
	}
}
