package plugins

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
)

type fakeInput struct{ n int }

func (*fakeInput) Open(context.Context) (plugin.Session, error) { return nil, nil }

type fakeOutput struct{}

func (fakeOutput) Deliver(context.Context, *message.Message, plugin.Delivery) ([]plugin.RecipientResult, error) {
	return nil, nil
}

func newInput() plugin.Input   { return &fakeInput{} }
func newOutput() plugin.Output { return fakeOutput{} }

// Registering is done from init(): a name given twice, or no name, is a
// programming error that must stop the program at start-up.
func TestRegistrationPanicsOnEmptyOrDuplicateName(t *testing.T) {
	load := func(string, plugin.ScriptLimits) (plugin.Filter, error) { return nil, nil }
	cases := map[string]struct {
		add  func(r *Registry)
		want string
	}{
		"empty input":      {func(r *Registry) { r.AddInput("", newInput) }, "empty type name"},
		"empty output":     {func(r *Registry) { r.AddOutput("", newOutput) }, "empty type name"},
		"empty script ext": {func(r *Registry) { r.AddScriptLoader("", load) }, "empty type name"},
		"duplicate input": {func(r *Registry) {
			r.AddInput("pop3", newInput)
			r.AddInput("pop3", newInput)
		}, `"pop3" registered twice`},
		"duplicate output": {func(r *Registry) {
			r.AddOutput("smtp", newOutput)
			r.AddOutput("smtp", newOutput)
		}, `"smtp" registered twice`},
		"duplicate script ext": {func(r *Registry) {
			r.AddScriptLoader(".lua", load)
			r.AddScriptLoader(".lua", load)
		}, `".lua" registered twice`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.Contains(s, c.want) {
					t.Fatalf("panic %v, want one with %q", r, c.want)
				}
			}()
			c.add(&Registry{})
		})
	}
	t.Run("an input and an output may share a name", func(t *testing.T) {
		r := &Registry{}
		r.AddInput("imap", newInput)
		r.AddOutput("imap", newOutput)
	})
}

func TestLookups(t *testing.T) {
	r := &Registry{}
	made := 0
	r.AddInput("pop3", func() plugin.Input { made++; return &fakeInput{n: made} })
	r.AddInput("maildir", newInput)
	r.AddOutput("smtp", newOutput)
	r.AddScriptLoader(".lua", func(path string, _ plugin.ScriptLimits) (plugin.Filter, error) {
		return nil, errors.New("loaded " + path)
	})

	a, ok := r.NewInput("pop3")
	b, _ := r.NewInput("pop3")
	if !ok || a == b || a.(*fakeInput).n != 1 || b.(*fakeInput).n != 2 {
		t.Fatalf("each NewInput must make a new plugin: %v %v %v", a, b, ok)
	}
	if p, ok := r.NewInput("smtp"); ok || p != nil {
		t.Fatal("an output type is no input")
	}
	if _, ok := r.NewOutput("smtp"); !ok {
		t.Fatal("smtp output not found")
	}
	if _, ok := r.NewOutput("nntp"); ok {
		t.Fatal("an unknown output was found")
	}
	if got := r.InputTypes(); !slices.Equal(got, []string{"maildir", "pop3"}) {
		t.Fatalf("input types %v, want sorted", got)
	}
	if got := r.OutputTypes(); !slices.Equal(got, []string{"smtp"}) {
		t.Fatalf("output types %v", got)
	}
	if _, err := r.LoadScript("/s/Filter.LUA", plugin.ScriptLimits{}); err == nil || err.Error() != "loaded /s/Filter.LUA" {
		t.Fatalf("a .LUA file must go to the .lua loader: %v", err)
	}
	_, err := r.LoadScript("/s/filter.py", plugin.ScriptLimits{})
	if err == nil || !strings.Contains(err.Error(), `no script language for ".py" files; known: .lua`) {
		t.Fatalf("unknown language: %v", err)
	}
	if (&Registry{}).InputTypes() == nil {
		t.Fatal("an empty registry lists no types, as an empty list")
	}
}
