package status

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"time"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/quarantine"
)

// Ask asks the mailflow running cfg for its health, at its [http] listen.
// An error means none answered (or cfg has no listen).
func Ask(cfg *config.Config) (Health, error) {
	var h Health
	if cfg.HTTP.Listen == "" {
		return h, fmt.Errorf("%s has no [http] listen to ask a running mailflow", cfg.Path)
	}
	scheme := "http"
	if cfg.HTTP.TLSCertFile != "" {
		scheme = "https"
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(scheme + "://" + cfg.HTTP.Listen + "/healthz")
	if err != nil {
		return h, fmt.Errorf("nothing answers on %s: %w", cfg.HTTP.Listen, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || h.Status == "" {
		return h, fmt.Errorf("%s answered, but not with mailflow's health: %v", cfg.HTTP.Listen, err)
	}
	return h, nil
}

// WriteStopped writes what cfg's state_dir holds, for when no mailflow
// runs it: the quarantine and the ledger.
func WriteStopped(w io.Writer, cfg *config.Config) {
	if q, err := quarantine.Open(filepath.Join(cfg.StateDir, "quarantine")); err == nil {
		if entries, err := q.List(); err == nil {
			fmt.Fprintf(w, "quarantine: %d messages (mailflow quarantine list -c %s)\n", len(entries), cfg.Path)
		}
	}
	l, closeLedger, err := engine.OpenLedger(cfg)
	if err != nil {
		fmt.Fprintf(w, "ledger: %v\n", err)
		return
	}
	defer closeLedger()
	records := 0
	for _, st := range l.Stats() {
		records += st.Records
	}
	fmt.Fprintf(w, "ledger: %d records\n", records)
}
