package engine

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mailflow/mailflow/engine/config"
)

// Serve runs the engine as a daemon: every input on its schedule (Run)
// until ctx is cancelled, reloading the config on SIGHUP and, with watch,
// whenever the config file, a script or a file a plugin read changes. A
// reload that fails is logged and the running config stays.
func (e *Engine) Serve(ctx context.Context, watch bool) error {
	reload := func(why string) {
		if ok, err := e.Reload(); err != nil {
			e.Log.Error("reload failed; the running config stays in force", "why", why, "err", err)
		} else if ok {
			e.Log.Info("config reloaded", "why", why)
		}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				reload("SIGHUP")
			}
		}
	}()
	if watch {
		w, err := config.Watch(ctx, e.Config, e.Log, func() { reload("file changed") })
		if err != nil {
			e.Log.Warn("cannot watch the config for changes; SIGHUP still reloads", "err", err)
		} else {
			defer w.Close()
		}
	}
	return e.Run(ctx)
}
