package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mailflow/mailflow/status"
)

func statusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status -c FILE",
		Short: "Is mail moving? The running mailflow's health, or what its state_dir holds when none runs",
		Long: `Asks the mailflow running FILE (its [http] listen) for its health and prints
it: each input's last and next poll and last error, each output's state, the
quarantine and the ledger. When none runs, it says so and what the state_dir
holds. Exits 0 when all is well, 1 when something needs a look (degraded),
2 when mailflow is not running (or FILE has no [http] listen to ask).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := g.load(cmd)
			if err != nil {
				return err
			}
			h, err := status.Ask(cfg)
			if err != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "not running: %v\n", err)
				status.WriteStopped(cmd.OutOrStdout(), cfg)
				return exitError(exitConfig)
			}
			h.WriteText(cmd.OutOrStdout())
			if h.Status != "ok" {
				return exitError(exitFailed)
			}
			return nil
		},
	}
}
