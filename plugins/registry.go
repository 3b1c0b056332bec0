// Package plugins is the one registry that every connector and filter
// registers with, by type name, from its package's init():
//
//	func init() { plugins.AddInput("maildir", func() plugin.Input { return &Input{} }) }
//
// The engine sees the registry only through plugin.Registry, so nothing in the
// engine imports a connector. cmd/mailflow blank-imports every built-in
// connector (see plugins/all).
package plugins

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/mailflow/mailflow/engine/plugin"
)

// InputCreator makes a new, unconfigured input. It must have no side effects.
type InputCreator func() plugin.Input

// OutputCreator makes a new, unconfigured output. It must have no side effects.
type OutputCreator func() plugin.Output

// ScriptLoader compiles a filter script file.
type ScriptLoader func(path string, limits plugin.ScriptLimits) (plugin.Filter, error)

// Registry maps type names to constructors.
type Registry struct {
	mu      sync.RWMutex
	inputs  map[string]InputCreator
	outputs map[string]OutputCreator
	scripts map[string]ScriptLoader // by file extension, ".lua"
}

// Default is the registry that built-in plugins register with.
var Default = &Registry{}

// AddInput registers an input type with Default.
func AddInput(name string, c InputCreator) { Default.AddInput(name, c) }

// AddOutput registers an output type with Default.
func AddOutput(name string, c OutputCreator) { Default.AddOutput(name, c) }

// AddScriptLoader registers a script language, by file extension, with Default.
func AddScriptLoader(ext string, l ScriptLoader) { Default.AddScriptLoader(ext, l) }

// AddInput registers an input type. It panics on an empty or duplicate name:
// that is a programming error, found at start-up.
func (r *Registry) AddInput(name string, c InputCreator) {
	r.mu.Lock()
	defer r.mu.Unlock()
	mustBeNew(name, r.inputs)
	if r.inputs == nil {
		r.inputs = map[string]InputCreator{}
	}
	r.inputs[name] = c
}

// AddOutput registers an output type; it panics on an empty or duplicate name.
func (r *Registry) AddOutput(name string, c OutputCreator) {
	r.mu.Lock()
	defer r.mu.Unlock()
	mustBeNew(name, r.outputs)
	if r.outputs == nil {
		r.outputs = map[string]OutputCreator{}
	}
	r.outputs[name] = c
}

// AddScriptLoader registers a script language by file extension (".lua").
func (r *Registry) AddScriptLoader(ext string, l ScriptLoader) {
	r.mu.Lock()
	defer r.mu.Unlock()
	mustBeNew(ext, r.scripts)
	if r.scripts == nil {
		r.scripts = map[string]ScriptLoader{}
	}
	r.scripts[ext] = l
}

func mustBeNew[T any](name string, m map[string]T) {
	if name == "" {
		panic("plugins: empty type name")
	}
	if _, dup := m[name]; dup {
		panic(fmt.Sprintf("plugins: %q registered twice", name))
	}
}

// NewInput implements plugin.Registry.
func (r *Registry) NewInput(typ string) (plugin.Input, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c, ok := r.inputs[typ]
	if !ok {
		return nil, false
	}
	return c(), true
}

// NewOutput implements plugin.Registry.
func (r *Registry) NewOutput(typ string) (plugin.Output, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c, ok := r.outputs[typ]
	if !ok {
		return nil, false
	}
	return c(), true
}

// InputTypes implements plugin.Registry.
func (r *Registry) InputTypes() []string { return keys(&r.mu, r.inputs) }

// OutputTypes implements plugin.Registry.
func (r *Registry) OutputTypes() []string { return keys(&r.mu, r.outputs) }

// LoadScript implements plugin.Registry.
func (r *Registry) LoadScript(path string, limits plugin.ScriptLimits) (plugin.Filter, error) {
	ext := strings.ToLower(filepath.Ext(path))
	r.mu.RLock()
	l, ok := r.scripts[ext]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%s: no script language for %q files; known: %s", path, ext, strings.Join(keys(&r.mu, r.scripts), ", "))
	}
	return l(path, limits)
}

func keys[T any](mu *sync.RWMutex, m map[string]T) []string {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var _ plugin.Registry = (*Registry)(nil)
