package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/trial"

	"github.com/mailflow/mailflow/engine/plugin"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/plugins"
)

const testHelp = `Usage: mailflow test -c FILE [--pipeline NAME] MSG.eml|DIR...
       mailflow test --script A.lua [--script B.lua ...] MSG.eml|DIR...

Runs a pipeline's filter chain (or the given scripts, in order) on messages
read from files, and prints for each the verdict, the outputs and envelope
recipients it would go to, what changed in its header, and the messages
scripts generated (vacation replies, notifications). Nothing is sent,
nothing is deleted, no state is written. A directory is read recursively
(a Maildir works). Exits 1 if a script broke on any message.
`

type scriptList []string

func (s *scriptList) String() string     { return strings.Join(*s, ",") }
func (s *scriptList) Set(v string) error { *s = append(*s, v); return nil }

func cmdTest(args []string, stdout, stderr io.Writer) int {
	var c common
	fs := newFlags("test", testHelp, stderr, &c)
	pipelineName := fs.String("pipeline", "", "the pipeline `NAME` whose scripts run (default: the only one)")
	var scripts scriptList
	fs.Var(&scripts, "script", "a script `FILE` to run (repeat for a chain); instead of a pipeline")
	scriptLib := fs.String("script-lib", "", "the `DIR` require() loads modules from (default: the config's script_lib)")
	if code, stop := parseFlags(fs, args, stdout); stop {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "mailflow test: give one or more message files or directories")
		return exitConfig
	}
	log, err := c.logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "mailflow:", err)
		return exitConfig
	}

	limits := plugin.ScriptLimits{}
	var defaultOutputs []string
	switch {
	case c.config != "":
		cfg, err := config.Load(c.config, plugins.Default)
		if err != nil {
			fmt.Fprintln(stderr, "mailflow:", err)
			return exitConfig
		}
		limits = cfg.Script
		limits.StoreDir = "" // a test run keeps its store in memory: it changes nothing
		if len(scripts) == 0 {
			p, err := choosePipeline(cfg, *pipelineName)
			if err != nil {
				fmt.Fprintln(stderr, "mailflow test:", err)
				return exitConfig
			}
			scripts, defaultOutputs = p.Scripts, append([]string{}, p.Outputs...) // non-nil: the pipeline's
		}
	case len(scripts) == 0:
		fmt.Fprintln(stderr, "mailflow test: give -c FILE (and --pipeline) or --script FILE")
		return exitConfig
	}
	if *scriptLib != "" {
		limits.LibDir = *scriptLib
	}
	chain, err := engine.LoadChain(plugins.Default, nil, scripts, limits, log)
	if err != nil {
		fmt.Fprintln(stderr, "mailflow:", err)
		return exitConfig
	}
	defer chain.Close()

	files, err := trial.Files(fs.Args())
	if err != nil {
		fmt.Fprintln(stderr, "mailflow test:", err)
		return exitConfig
	}
	broke := 0
	counts := map[string]int{}
	for _, f := range files {
		r := trial.Run(chain, f, defaultOutputs)
		printTrial(stdout, r, defaultOutputs == nil)
		switch {
		case r.Err != nil:
			broke++
			counts["broke"]++
		default:
			counts[r.Verdict]++
		}
	}
	if len(files) > 1 {
		var parts []string
		for _, k := range []string{"keep", "route", "redirect", "drop", "quarantine", "leave", "broke"} {
			if counts[k] > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
			}
		}
		fmt.Fprintf(stdout, "\n%d messages: %s\n", len(files), strings.Join(parts, ", "))
	}
	if broke > 0 {
		return exitFailed
	}
	return exitOK
}

func choosePipeline(cfg *config.Config, name string) (*config.Pipeline, error) {
	var names []string
	for _, p := range cfg.Pipelines {
		names = append(names, p.Name)
	}
	if name == "" {
		if len(cfg.Pipelines) == 1 {
			return cfg.Pipelines[0], nil
		}
		return nil, fmt.Errorf("%s has %d pipelines; choose one with --pipeline (%s)", cfg.Path, len(names), strings.Join(names, ", "))
	}
	if p := cfg.Pipeline(name); p != nil {
		return p, nil
	}
	return nil, fmt.Errorf("pipeline %q is not defined in %s; defined: %s", name, cfg.Path, strings.Join(names, ", "))
}

// printTrial prints what the chain would do with one message.
func printTrial(w io.Writer, r *trial.Result, loose bool) {
	fmt.Fprintf(w, "== %s\n", r.Path)
	switch {
	case r.Err != nil && r.By != "":
		fmt.Fprintf(w, "   verdict:    quarantine (script %s broke: %v)\n", r.By, r.Err)
		return
	case r.Err != nil:
		fmt.Fprintf(w, "   error:      %v\n", r.Err)
		return
	case r.HeaderErr != nil:
		fmt.Fprintf(w, "   warning:    header could not be parsed (%s); it flows on untouched\n", oneLine(r.HeaderErr.Error()))
	}
	line := r.Verdict
	if r.By != "" {
		line += " (by " + r.By + ")"
	}
	if r.Reason != "" {
		line += ": " + r.Reason
	}
	fmt.Fprintf(w, "   verdict:    %s\n", line)
	if r.Acts() {
		none := "(none: it would be quarantined)"
		if loose {
			none = "(the pipeline's outputs)"
		}
		fmt.Fprintf(w, "   outputs:    %s\n", listOr(r.Outputs, none))
		fmt.Fprintf(w, "   recipients: %s\n", listOr(r.Recipients, "(each output's own)"))
		if r.Sender != "" {
			fmt.Fprintf(w, "   sender:     %s\n", r.Sender)
		}
	}
	for _, g := range r.Generated {
		sender := g.Sender
		if sender == "" {
			sender = "(the output's)"
		}
		fmt.Fprintf(w, "   generated:  %s through output %s, from %s to %s\n", g.Name, g.Output, sender, strings.Join(g.Recipients, ", "))
		printLines(w, "     ", g.Header)
		printLines(w, "     | ", g.Body)
	}
	if b := r.Body; b != nil {
		fmt.Fprintf(w, "   body:       changed (%d → %d bytes)\n", b.Before, b.After)
		if b.Unreadable != nil {
			fmt.Fprintf(w, "     (unreadable: %v)\n", b.Unreadable)
		}
		for n, p := range b.Parts {
			fmt.Fprintf(w, "     part %d: %s\n", n+1, p.Type)
			printLines(w, "     | ", p.Tail)
		}
	}
	if len(r.Header) == 0 {
		fmt.Fprintln(w, "   header:     unchanged")
		return
	}
	fmt.Fprintln(w, "   header:")
	printLines(w, "     ", r.Header)
}

func printLines(w io.Writer, prefix string, lines []string) {
	for _, l := range lines {
		fmt.Fprintf(w, "%s%s\n", prefix, l)
	}
}

func listOr(xs []string, none string) string {
	if len(xs) == 0 {
		return none
	}
	return strings.Join(xs, ", ")
}
