package migrate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/migrate/survey"
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

// tokensFile keeps, per input → output pair, the folder-state tokens of
// the last verification that found each folder clean.
const tokensFile = "verified.json"

func loadTokens(dir string) map[string]survey.Tokens {
	known := map[string]survey.Tokens{}
	if b, err := os.ReadFile(filepath.Join(dir, tokensFile)); err == nil {
		json.Unmarshal(b, &known)
	}
	return known
}

// saveTokens keeps known; a failure only costs the next verification a
// full read.
func saveTokens(dir string, known map[string]survey.Tokens) {
	b, err := json.MarshalIndent(known, "", "  ")
	if err != nil {
		return
	}
	tmp := filepath.Join(dir, tokensFile+".tmp")
	if os.WriteFile(tmp, append(b, '\n'), 0o600) == nil {
		os.Rename(tmp, filepath.Join(dir, tokensFile))
	}
}

// Resume fills in what p leaves out from the plan an earlier run kept in
// p's state directory, so that a run again needs no option repeated (a
// --folder-map forgotten would verify against the unmapped names): with
// only --state given, the whole plan is the saved one; otherwise each
// option p does not set (empty, zero, false) is the saved one's. It
// reports whether a saved plan was found.
func (p *Plan) Resume() (bool, error) {
	if p.Config != "" || p.StateDir == "" && (p.From.URL == "" || p.To.URL == "") {
		return false, nil
	}
	dir := p.StateDir
	if dir == "" {
		var err error
		if dir, err = p.DefaultStateDir(); err != nil {
			return false, nil
		}
	}
	saved, err := LoadPlan(dir)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if p.From.URL != "" && (p.From.key() != saved.From.key() || p.To.key() != saved.To.key()) {
		return false, planErrorf("--state %s holds the record of a migration from %s to %s; give another --state for another one", dir, saved.From.Redacted(), saved.To.Redacted())
	}
	fill := func(dst *string, src string) {
		if *dst == "" {
			*dst = src
		}
	}
	fill(&p.From.URL, saved.From.URL)
	fill(&p.To.URL, saved.To.URL)
	fill(&p.From.PasswordEnv, saved.From.PasswordEnv)
	fill(&p.From.PasswordFile, saved.From.PasswordFile)
	fill(&p.To.PasswordEnv, saved.To.PasswordEnv)
	fill(&p.To.PasswordFile, saved.To.PasswordFile)
	fill(&p.Rcpt, saved.Rcpt)
	fill(&p.Rate, saved.Rate)
	fill(&p.CAFile, saved.CAFile)
	if p.From.PasswordEnv != "" && p.From.PasswordFile != "" {
		p.From.PasswordFile = "" // both: the one given now
	}
	if p.Since.IsZero() {
		p.Since = saved.Since
	}
	if p.Folders == nil {
		p.Folders = saved.Folders
	}
	if p.SyncDeletes && !slices.Equal(p.Folders, saved.Folders) {
		// The messages of a folder left out would look deleted at the
		// source.
		was := "every folder"
		if saved.Folders != nil {
			was = strings.Join(saved.Folders, ",")
		}
		return false, planErrorf("--sync-deletes with other --folders than the last run's (%s) would delete at the destination what the folders left out hold: give the same --folders", was)
	}
	if p.FolderMap == nil {
		p.FolderMap = saved.FolderMap
	}
	if p.MaxBytesPerSecond == 0 {
		p.MaxBytesPerSecond = saved.MaxBytesPerSecond
	}
	if p.MaxMessageSize == 0 {
		p.MaxMessageSize = saved.MaxMessageSize
	}
	p.resumeGmail(saved)
	p.Keep = p.Keep || saved.Keep
	p.AddMessageID = p.AddMessageID || saved.AddMessageID
	p.AllowPlaintextAuth = p.AllowPlaintextAuth || saved.AllowPlaintextAuth
	p.StateDir = dir
	return true, nil
}
