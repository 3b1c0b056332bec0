package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/ledger"
	"github.com/mailflow/mailflow/internal/human"
)

func ledgerCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "What the delivery ledger holds, per input; compact it",
		Long: `The ledger (STATE_DIR/ledger.db) records, per input, the messages that are
still at their source and what became of them. A record is removed once its
message has left the source, so the ledger's size follows what the sources
hold, not how much ever went through them. Records of an input that is no
longer in the config are removed after ledger_grace (default 168h). Both
commands need the state_dir to themselves: stop "mailflow run" first.`,
	}
	// with opens the ledger of the -c config and hands it to fn.
	with := func(fn func(cmd *cobra.Command, cfg *config.Config, l *ledger.Ledger) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := g.load(cmd)
			if err != nil {
				return err
			}
			l, closeLedger, err := engine.OpenLedger(cfg)
			if err != nil {
				return failed(cmd, exitConfig, err)
			}
			defer closeLedger()
			return fn(cmd, cfg, l)
		}
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "stats -c FILE",
		Short: "The records per input, the id scheme each source used last, and the file's size",
		Args:  cobra.NoArgs,
		RunE: with(func(cmd *cobra.Command, cfg *config.Config, l *ledger.Ledger) error {
			file, free := l.Size()
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "INPUT\tRECORDS\tSETTLED\tSCHEME\tLAST LISTED\tNOTE")
			for _, st := range l.Stats() {
				last, note := "-", ""
				if !st.Meta.LastListed.IsZero() {
					last = st.Meta.LastListed.Local().Format(time.DateTime)
				}
				if !st.Meta.Orphaned.IsZero() {
					note = fmt.Sprintf("not in the config since %s; removed after %s", st.Meta.Orphaned.Local().Format(time.DateTime), cfg.LedgerGrace)
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", st.Input, st.Records, st.Settled, st.Meta.Scheme, last, note)
			}
			tw.Flush()
			fmt.Fprintf(cmd.OutOrStdout(), "file: %s, %s of it free pages\n", human.Bytes(file), human.Bytes(free))
			return nil
		}),
	}, &cobra.Command{
		Use:   "compact -c FILE",
		Short: "Rewrite the file without its free pages (also done at start when half is free)",
		Args:  cobra.NoArgs,
		RunE: with(func(cmd *cobra.Command, cfg *config.Config, l *ledger.Ledger) error {
			before, _ := l.Size()
			if err := l.Compact(); err != nil {
				return failed(cmd, exitFailed, err)
			}
			after, _ := l.Size()
			fmt.Fprintf(cmd.OutOrStdout(), "compacted %s: %s → %s\n", cfg.StateDir, human.Bytes(before), human.Bytes(after))
			return nil
		}),
	})
	return cmd
}
