package engine

import (
	"context"
	"fmt"
	"sort"
)

// FolderCheck is what a verification found for one source folder.
type FolderCheck struct {
	Folder  string
	Source  int      // messages at the source
	Found   int      // of those, found at the destination (by Message-ID)
	NoID    int      // of those, without a Message-ID: counted, not checked
	Missing []string // Message-IDs at the source and not at the destination
}

// Verify checks that every message the input's source holds is at the
// output, folder by folder, by Message-ID: for migrations, after the run.
// The output must be a Finder.
func (e *Engine) Verify(ctx context.Context, input, output string) ([]FolderCheck, error) {
	items, err := e.Survey(ctx, input, false)
	if err != nil {
		return nil, err
	}
	g := e.gens.pin()
	defer g.unpin()
	oc := g.setup.Config.Output(output)
	if oc == nil {
		return nil, fmt.Errorf("no output %q", output)
	}
	finder, ok := oc.Plugin.(Finder)
	if !ok {
		return nil, fmt.Errorf("output %q cannot say what it holds", output)
	}
	by := map[string]*FolderCheck{}
	var folders []string
	for _, it := range items {
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
		holds, err := finder.Holds(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("output %q, folder %q: %w", output, f, err)
		}
		fc := by[f]
		for _, it := range items {
			switch {
			case it.Folder != f:
			case it.MessageID == "":
				fc.NoID++
			case holds[it.MessageID] > 0:
				holds[it.MessageID]--
				fc.Found++
			default:
				fc.Missing = append(fc.Missing, it.MessageID)
			}
		}
		out = append(out, *fc)
	}
	return out, nil
}
