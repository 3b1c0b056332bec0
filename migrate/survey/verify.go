package survey

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
)

// FolderCheck is what a verification found for one source folder.
type FolderCheck struct {
	Folder string `json:"folder"`
	Source int    `json:"source"` // messages at the source
	Found  int    `json:"found"`  // of those, found at the destination
	// Made counts the found and missing messages that have no Message-ID
	// and were named by a digest of Date, From, Subject and size instead.
	Made int `json:"without_message_id"`
	// Unnamed counts messages the source could not name (no identity in
	// its listing, no header to peek at): counted, not checked.
	Unnamed int      `json:"not_checked"`
	Missing []string `json:"missing,omitempty"` // identities at the source and not at the destination
}

// Verify checks that every message the input's source holds is at the
// output, folder by folder, by identity (message.Identity): for migrations,
// after the run. The output must be a Finder.
func Verify(ctx context.Context, e *engine.Engine, input, output string) ([]FolderCheck, error) {
	items, err := Survey(ctx, e, input, PeekAll)
	if err != nil {
		return nil, err
	}
	oc := e.Config().Output(output)
	if oc == nil {
		return nil, fmt.Errorf("no output %q", output)
	}
	finder, ok := oc.Plugin.(plugin.Finder)
	if !ok {
		return nil, fmt.Errorf("output %q cannot say what it holds", output)
	}
	by := map[string]*FolderCheck{}
	role := map[string]string{}
	var folders []string
	for _, it := range items {
		role[it.Folder] = it.FolderRole
		fc := by[it.Folder]
		if fc == nil {
			fc = &FolderCheck{Folder: it.Folder}
			by[it.Folder] = fc
			folders = append(folders, it.Folder)
		}
		fc.Source++
	}
	sort.Strings(folders)
	out := make([]FolderCheck, 0, len(folders))
	for _, f := range folders {
		holds, err := finder.Holds(ctx, f, role[f])
		if err != nil {
			return nil, fmt.Errorf("output %q, folder %q: %w", output, f, err)
		}
		fc := by[f]
		for _, it := range items {
			if it.Folder != f {
				continue
			}
			if it.Identity == "" {
				fc.Unnamed++
				continue
			}
			if strings.HasSuffix(it.Identity, "@"+message.IdentityDomain) {
				fc.Made++
			}
			if holds[it.Identity] > 0 {
				holds[it.Identity]--
				fc.Found++
			} else {
				fc.Missing = append(fc.Missing, it.Identity)
			}
		}
		out = append(out, *fc)
	}
	return out, nil
}
