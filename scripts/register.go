package scripts

import (
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/plugins"
)

func init() {
	plugins.AddScriptLoader(".lua", func(path string, limits plugin.ScriptLimits) (plugin.Filter, error) {
		return Load(path, limits)
	})
}
