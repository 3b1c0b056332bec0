// Package settle reads what a POP3 or Maildir input does with a message at
// its source once the engine says it is settled (delivered, dropped or
// quarantined): the on_settled key, the name the IMAP input gave it first,
// and the delete key it replaces.
package settle

import (
	"errors"
	"fmt"
	"log/slog"
)

// Remove reads on_settled, "delete" (the default) or "keep", and the old
// delete key, and reports whether a settled message is removed at its
// source. The old key still works, with a warning on log that names its
// replacement; giving both is an error, lest they disagree.
func Remove(onSettled string, delete *bool, log *slog.Logger) (bool, error) {
	if delete != nil {
		if onSettled != "" {
			return false, errors.New("give on_settled, not the old delete as well")
		}
		if log == nil {
			log = slog.Default()
		}
		instead := map[bool]string{true: `on_settled = "delete"`, false: `on_settled = "keep"`}[*delete]
		log.Warn(fmt.Sprintf("delete = %v is deprecated; write %s instead", *delete, instead), "replacement", instead)
		return *delete, nil
	}
	switch onSettled {
	case "", "delete":
		return true, nil
	case "keep":
		return false, nil
	}
	return false, fmt.Errorf(`on_settled must be "delete" or "keep", not %q`, onSettled)
}
