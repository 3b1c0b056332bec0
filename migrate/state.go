package migrate

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mailflow/mailflow/engine/config"
)

// planFile is where a run keeps its plan, in its state directory: the
// plan names its secrets (an environment variable, a file) but holds none.
const planFile = "plan.json"

// save keeps the plan in the state directory, so that what a run did can
// be looked at and mended later with nothing but that directory
// ("mailflow quarantine resend -c STATE_DIR").
func (p *Plan) save(dir string) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, planFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, planFile))
}

// LoadPlan reads the plan a run kept in its state directory.
func LoadPlan(dir string) (Plan, error) {
	var p Plan
	b, err := os.ReadFile(filepath.Join(dir, planFile))
	if err != nil {
		return p, fmt.Errorf("%s is not a migration's state directory: %w", dir, err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("%s: %w", filepath.Join(dir, planFile), err)
	}
	p.StateDir = dir
	return p, nil
}

// LoadConfig is the engine's config of the migration whose state is in
// dir, as its run built it.
func LoadConfig(dir string) (*config.Config, error) {
	p, err := LoadPlan(dir)
	if err != nil {
		return nil, err
	}
	from, to, err := p.check()
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	return p.buildConfig(from, to, abs, false)
}
