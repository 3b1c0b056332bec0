package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/quarantine"
	"github.com/mailflow/mailflow/internal/human"
	"github.com/mailflow/mailflow/plugins"
)

func quarantineCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "quarantine",
		Short: "List, show, resend or delete quarantined messages (also while run runs)",
		Long: `The quarantine keeps the messages an output refused for good or a filter
broke on. Its commands work while "mailflow run" runs on the same config: the
quarantine is plain files in STATE_DIR/quarantine/ (ID.eml, the original
message byte for byte, and ID.json, the record), and an entry being resent or
deleted is locked against a second resend or delete. -c may also name a
migration's state directory.`,
	}
	// open reads the config and opens its quarantine, which is files beside
	// the ledger, not in it: these commands never take the state_dir lock
	// that "mailflow run" holds.
	open := func(cmd *cobra.Command) (*quarantine.Store, error) {
		cfg, _, err := g.load(cmd)
		if err != nil {
			return nil, err
		}
		q, err := quarantine.Open(filepath.Join(cfg.StateDir, "quarantine"))
		if err != nil {
			return nil, failed(cmd, exitFailed, err)
		}
		return q, nil
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list -c FILE",
		Short: "List every quarantined message: its id, when, where from, size and why",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q, err := open(cmd)
			if err != nil {
				return err
			}
			entries, err := q.List()
			if err != nil {
				return failed(cmd, exitFailed, err)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tWHEN\tINPUT\tSIZE\tMESSAGE-ID\tREASON")
			for _, e := range entries {
				reason := human.Line(e.Reason)
				if e.Held {
					reason = "[source keeps it] " + reason
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", e.ID, e.At.Local().Format(time.DateTime), e.Input, e.Size, e.MessageID, reason)
			}
			return tw.Flush()
		},
	}, &cobra.Command{
		Use:   "show -c FILE ID",
		Short: "Print one entry's record, then the message exactly as it was kept",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q, err := open(cmd)
			if err != nil {
				return err
			}
			entry, msg, err := q.Get(args[0])
			if err != nil {
				return failed(cmd, exitFailed, err)
			}
			defer msg.Close()
			b, _ := json.MarshalIndent(entry, "", "  ")
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n\n", b)
			if _, err := io.Copy(cmd.OutOrStdout(), msg.Original()); err != nil {
				return failed(cmd, exitFailed, err)
			}
			return nil
		},
	}, &cobra.Command{
		Use:   "resend -c FILE ID...",
		Short: "Put messages back through their pipeline (not to recipients that have them)",
		Long: `resend puts each message back through its pipeline; recipients that had
already accepted it are not sent it again. It leaves the quarantine once it
is delivered or dropped (or is quarantined anew, with a new id).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, log, err := g.load(cmd)
			if err != nil {
				return err
			}
			e, err := engine.OpenForResend(cfg, plugins.Default, log)
			if err != nil {
				return failed(cmd, exitConfig, err)
			}
			defer e.Close()
			return eachEntry(cmd, args, func(id string) (string, error) { return e.Resend(context.Background(), id) })
		},
	}, &cobra.Command{
		Use:   "delete -c FILE ID...",
		Short: "Remove entries for good",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q, err := open(cmd)
			if err != nil {
				return err
			}
			return eachEntry(cmd, args, func(id string) (string, error) { return "deleted", q.Delete(id) })
		},
	})
	return cmd
}

// eachEntry does fn to each id, printing its outcome, and fails if any
// failed.
func eachEntry(cmd *cobra.Command, ids []string, fn func(id string) (string, error)) error {
	bad := false
	for _, id := range ids {
		outcome, err := fn(id)
		if err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "%s: %v\n", id, err)
			bad = true
			continue
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", id, outcome)
	}
	if bad {
		return exitError(exitFailed)
	}
	return nil
}
