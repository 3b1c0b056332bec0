// Package manpage is "mailflow man DIR": it writes a man page per command
// (mailflow.1, mailflow-run.1, …) from the command line itself, so that the
// pages say what --help says. dist/build-deb puts them in the .deb. It is a
// package of its own to keep cmd/mailflow small.
package manpage

import (
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// Command returns the hidden "man DIR" command, which writes the man pages
// of the command line it is added to.
func Command() *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "Write a man page per command into DIR (mailflow.1, mailflow-run.1, …)",
		Args:   cobra.ExactArgs(1),
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return Write(cmd.Root(), args[0])
		},
	}
}

// Write writes the man pages of root and every command under it that is
// not hidden into dir, made if missing, in section 1. Their date is
// SOURCE_DATE_EPOCH's if set (for a reproducible package), else today.
func Write(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root.DisableAutoGenTag = true // no "HISTORY: generated on DATE by spf13/cobra"
	header := &doc.GenManHeader{
		Section: "1",
		Source:  root.Name() + " " + root.Version,
		Manual:  root.Name() + " manual",
	}
	return doc.GenManTree(root, header, dir)
}
