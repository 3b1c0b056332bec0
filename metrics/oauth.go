package metrics

import (
	"github.com/mailflow/mailflow/connectors/oauth"
	"github.com/mailflow/mailflow/engine/config"
)

// OAuthStatuses reads the tokens of cfg's OAuth connectors, for SetAuth.
// A connector that has not asked for a token yet is read from its token
// file.
func OAuthStatuses(cfg *config.Config) []AuthStatus {
	var out []AuthStatus
	store := oauth.NewStore(cfg.StateDir)
	add := func(name string, p any) {
		u, ok := p.(oauth.User)
		if !ok || u.Tokens() == nil {
			return
		}
		a := AuthStatus{Connector: name, Failures: u.Tokens().Failures()}
		t := u.Tokens().Status()
		if t == nil {
			var err error
			if t, err = store.Load(name); err != nil {
				a.Error = err.Error()
			}
		}
		if t != nil {
			a.Expiry = t.Expiry
			if a.Error == "" {
				a.Error = t.LastError
			}
		}
		out = append(out, a)
	}
	for _, ic := range cfg.Inputs {
		add(ic.Name, ic.Plugin)
	}
	for _, oc := range cfg.Outputs {
		add(oc.Name, oc.Plugin)
	}
	return out
}
