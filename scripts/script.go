// Package scripts runs filter scripts written in Lua (gopher-lua).
//
// A script is a file that defines
//
//	function filter(msg)
//	  ...
//	  return keep()        -- or drop(reason), route(...), redirect(...), quarantine(reason)
//	end
//
// It is compiled once; every message then runs on a Lua state taken from a
// pool, so that filters run concurrently without sharing a state. Each state
// is a sandbox (no os, io, debug or loading of code; the libraries
// read-only), each message finds the script's top level as it ran, never as
// another message left it (env.go, pristine.go), and each call is bounded
// in time and memory by a watchdog (watchdog.go, footprint.go). A state
// whose call was stopped is thrown away, never reused. The API a script
// sees is documented in scripts/README.md.
package scripts

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailflow/mailflow/engine/message"
)

// Script is one compiled filter script. It implements plugin.Filter.
type Script struct {
	path   string
	name   string // the file's base name, used as the chunk name in errors
	proto  *lua.FunctionProto
	limits plugin.ScriptLimits
	log    *slog.Logger
	shared *sharedState // the script's `state` table, shared by its pool
	pool   chan *vm
	closed atomic.Bool

	storeMu sync.Mutex
	store   kvStore // opened at the first use (storeapi.go)

	modMu   sync.Mutex
	modules map[string]*lua.FunctionProto // compiled script_lib modules (require.go)
}

// Load compiles the script at path and runs its top level once, to check
// that it defines filter(msg). Errors name the file and line.
func Load(path string, limits plugin.ScriptLimits) (*Script, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := &Script{
		path:   path,
		name:   filepath.Base(path),
		limits: withDefaults(limits),
		log:    slog.Default(),
		shared: &sharedState{values: map[string]lua.LValue{}},
		pool:   make(chan *vm, runtime.GOMAXPROCS(0)*2),
	}
	s.proto, err = compile(src, path, s.name)
	if err != nil {
		return nil, err
	}
	// Make the first state now and run the top level on it, so that an
	// error there, or a missing filter function, is found when the config
	// is checked.
	v := s.newVM()
	if err := v.check(); err != nil {
		v.close()
		return nil, err
	}
	s.put(v)
	return s, nil
}

func withDefaults(l plugin.ScriptLimits) plugin.ScriptLimits {
	if l.Timeout <= 0 {
		l.Timeout = time.Second
	}
	if l.MaxMemory <= 0 {
		l.MaxMemory = 64 << 20
	}
	return l
}

// Provision implements plugin.Provisioner: script logs go to the engine's
// logger.
func (s *Script) Provision(env plugin.Env) error {
	if env.Logger != nil {
		s.log = env.Logger
	}
	return nil
}

// Path is the file the script was loaded from.
func (s *Script) Path() string { return s.path }

// Filter implements plugin.Filter.
func (s *Script) Filter(ctx context.Context, msg *message.Message) (plugin.Verdict, error) {
	if s.closed.Load() {
		return plugin.Verdict{}, errors.New("script was unloaded")
	}
	v := s.get()
	verdict, err := v.call(msg)
	stopped := v.broken
	s.put(v)
	if stopped {
		releaseMemory()
	}
	return verdict, err
}

// Close releases the pooled states. Calls still running finish first: their
// states are closed when they are put back.
func (s *Script) Close() error {
	s.closed.Store(true)
	for {
		select {
		case v := <-s.pool:
			v.close()
		default:
			s.storeMu.Lock()
			defer s.storeMu.Unlock()
			if s.store != nil {
				err := s.store.close()
				s.store = nil
				return err
			}
			return nil
		}
	}
}

func (s *Script) get() *vm {
	select {
	case v := <-s.pool:
		return v
	default:
		return s.newVM()
	}
}

func (s *Script) put(v *vm) {
	if v.broken || s.closed.Load() {
		v.close()
		return
	}
	select {
	case s.pool <- v:
	default:
		v.close()
	}
}

// scriptError is how a failed call is reported: the script's name is added by
// the engine, so the text starts with what went wrong.
func (s *Script) scriptError(err error) error {
	msg := err.Error()
	var ae *lua.ApiError
	if errors.As(err, &ae) {
		msg = ae.Object.String()
	}
	return errors.New(strings.TrimSpace(msg))
}

// releaseMemory gives back to the system what a stopped script held. Go
// keeps freed memory for reuse and sets its next collection at twice the
// live heap, so without this one runaway script would leave the process
// at its peak and let the next grow to twice that. It runs in the
// background, and stops that come together share one release: a full
// collection costs milliseconds, and stops are rare.
func releaseMemory() {
	select {
	case releases <- struct{}{}:
	default: // one is already due
	}
}

var releases = func() chan struct{} {
	c := make(chan struct{}, 1)
	go func() {
		for range c {
			debug.FreeOSMemory()
		}
	}()
	return c
}()

var _ plugin.Filter = (*Script)(nil)
