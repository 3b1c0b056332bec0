package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mailflow/mailflow/connectors/mbox"
	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/engine/trial"
	"github.com/mailflow/mailflow/plugins"
)

func testCmd(g *globals) *cobra.Command {
	var pipelineName, scriptLib string
	var scripts []string
	cmd := &cobra.Command{
		Use:   "test -c FILE [--pipeline NAME | --script F.lua...] MSG.eml|MBOX|DIR|-...",
		Short: "Show what the filter chain would do with saved messages; send nothing",
		Long: `Runs a pipeline's filter chain (or the given scripts, in order) on messages
read from files, and prints for each the verdict, the outputs and envelope
recipients it would go to, what changed in its header, and the messages
scripts generated (vacation replies, notifications). Nothing is sent,
nothing is deleted, no state is written. A file is one message, or each
message of an mbox; a Maildir is the messages in its cur/ and new/; another
directory is every file under it; - is standard input (a message or an
mbox). Exits 1 if a message could not be read or a script broke on one.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return failed(cmd, exitConfig, err)
			}
			limits := plugin.ScriptLimits{}
			var defaultOutputs []string
			switch {
			case g.config != "":
				cfg, err := config.Load(g.config, plugins.Default)
				if err != nil {
					return failed(cmd, exitConfig, err)
				}
				limits = cfg.Script
				limits.StoreDir = "" // a test run keeps its store in memory: it changes nothing
				if len(scripts) == 0 {
					p, err := choosePipeline(cfg, pipelineName)
					if err != nil {
						return failed(cmd, exitConfig, err)
					}
					scripts, defaultOutputs = p.Scripts, append([]string{}, p.Outputs...) // non-nil: the pipeline's
				}
			case len(scripts) == 0:
				return failed(cmd, exitConfig, errors.New("test: give -c FILE (and --pipeline) or --script FILE"))
			}
			if scriptLib != "" {
				limits.LibDir = scriptLib
			}
			chain, err := engine.LoadChain(plugins.Default, nil, scripts, limits, log)
			if err != nil {
				return failed(cmd, exitConfig, err)
			}
			defer chain.Close()
			if err := trial.Check(args); err != nil {
				return failed(cmd, exitConfig, err)
			}
			msgs := trial.Messages(args, cmd.InOrStdin(), mboxes)
			switch sum := trial.Try(chain, msgs, defaultOutputs, cmd.OutOrStdout()); {
			case sum.Messages == 0:
				return failed(cmd, exitConfig, fmt.Errorf("test: no message in %s", strings.Join(args, ", ")))
			case sum.Broke() > 0:
				return exitError(exitFailed)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&pipelineName, "pipeline", "", "the pipeline `NAME` whose scripts run (default: the only one)")
	cmd.Flags().StringArrayVar(&scripts, "script", nil, "a script `FILE` to run (repeat for a chain); instead of a pipeline")
	cmd.Flags().StringVar(&scriptLib, "script-lib", "", "the `DIR` require() loads modules from (default: the config's script_lib)")
	return cmd
}

// mboxes splits an mbox for "mailflow test" with connectors/mbox's Reader.
var mboxes = trial.Mbox{Is: mbox.IsMbox, Read: func(r io.Reader) func() (string, io.Reader, error) {
	mr := mbox.NewReader(r, mbox.Auto)
	return func() (string, io.Reader, error) {
		m, err := mr.Next()
		if err != nil {
			return "", nil, err
		}
		return m.From, m, nil
	}
}}

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
