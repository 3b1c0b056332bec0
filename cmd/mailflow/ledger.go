package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/mailflow/mailflow/engine"
)

const ledgerHelp = `Usage: mailflow ledger stats -c FILE
       mailflow ledger compact -c FILE

The ledger (STATE_DIR/ledger.db) records, per input, the messages that are
still at their source and what became of them. A record is removed once its
message has left the source, so the ledger's size follows what the sources
hold, not how much ever went through them. Records of an input that is no
longer in the config are removed after ledger_grace (default 168h).

stats shows the records per input, the id scheme each source used last, and
the file's size. compact rewrites the file without its free pages (mailflow
also does this by itself at start when more than half of it is free).
Both need the state_dir to themselves: stop "mailflow run" first.
`

func cmdLedger(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
		fmt.Fprint(stdout, ledgerHelp)
		return exitOK
	}
	if len(args) == 0 || (args[0] != "stats" && args[0] != "compact") {
		fmt.Fprint(stderr, ledgerHelp)
		return exitConfig
	}
	verb := args[0]
	var c common
	fs := newFlags("ledger "+verb, ledgerHelp, stderr, &c)
	if code, stop := parseFlags(fs, args[1:], stdout); stop {
		return code
	}
	cfg, _, code := c.load(stderr)
	if cfg == nil {
		return code
	}
	l, closeLedger, err := engine.OpenLedger(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "mailflow:", err)
		return exitFailed
	}
	defer closeLedger()
	file, free := l.Size()
	if verb == "compact" {
		if err := l.Compact(); err != nil {
			fmt.Fprintln(stderr, "mailflow:", err)
			return exitFailed
		}
		after, _ := l.Size()
		fmt.Fprintf(stdout, "compacted %s: %s → %s\n", cfg.StateDir, humanBytes(file), humanBytes(after))
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
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
	fmt.Fprintf(stdout, "file: %s, %s of it free pages\n", humanBytes(file), humanBytes(free))
	return exitOK
}
