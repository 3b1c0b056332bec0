package scripts

import (
	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/plugins"
)

func init() {
	plugins.AddScriptLoader(".lua", func(path string, limits engine.ScriptLimits) (engine.Filter, error) {
		return Load(path, limits)
	})
}
