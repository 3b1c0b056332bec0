package plugin

// Registry makes plugins by type name. plugins.Registry is the one
// implementation; the engine only sees this interface, so that nothing in
// the engine imports the plugins that are built on it.
type Registry interface {
	NewInput(typ string) (Input, bool)
	NewOutput(typ string) (Output, bool)
	InputTypes() []string
	OutputTypes() []string
	// LoadScript compiles a filter script (by its file extension).
	LoadScript(path string, limits ScriptLimits) (Filter, error)
}
