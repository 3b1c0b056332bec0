package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/spf13/cobra"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/check"
	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/metrics"
	"github.com/mailflow/mailflow/plugins"
	"github.com/mailflow/mailflow/status"
)

func runCmd(g *globals) *cobra.Command {
	var once, watch bool
	cmd := &cobra.Command{
		Use:   "run -c FILE",
		Short: "Poll every input on its schedule (or once) and deliver what it fetches",
		Long: `Runs every input of FILE on its schedule until SIGINT or SIGTERM. On the
first signal it fetches nothing more, gives back to their sources the
messages no output has been handed yet, lets the deliveries under way finish,
commits what settled, and exits; after shutdown_timeout (default 30s), or on
a second signal, it exits at once, and a delivery still under way is then in
doubt (reported when it is sent again). SIGHUP reloads the config and
scripts; a config that does not build is logged and the running one stays.

` + inDoubtNote + `

With --once, each input is polled once, a summary line per input is printed,
and mailflow exits: 0 when every message was delivered or dropped, 1 when
some were left at their source to be retried or a poll failed, 2 when the
config is wrong or the state_dir is in use, 3 when all was settled but some
messages went to the quarantine (so that cron notices).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := g.load(cmd)
			if err != nil {
				return err
			}
			ctx, stop := stopOnSignal(log, cfg.ShutdownTimeout)
			defer stop()
			var opts []engine.Option
			var srv *status.Server
			var e *engine.Engine
			var opened atomic.Pointer[engine.Engine]
			if h := cfg.HTTP; h.Listen != "" {
				m, t := metrics.New(), status.NewTracker()
				opts = append(opts, engine.WithObserver(engine.Observers(m, t)))
				// The page serves before the engine is open: until then
				// there are no connectors to read.
				auth := func() []metrics.AuthStatus {
					if e := opened.Load(); e != nil {
						return metrics.OAuthStatuses(e.Config())
					}
					return nil
				}
				if srv, err = serveStatus(ctx, h, t, m, log, auth); err != nil {
					return failed(cmd, exitConfig, fmt.Errorf("http: %w", err))
				}
			}
			if e, err = engine.Open(cfg, plugins.Default, log, opts...); err != nil {
				return failed(cmd, exitConfig, err)
			}
			defer e.Close()
			opened.Store(e)
			if srv != nil {
				srv.SetEngine(e)
			}
			if once {
				r := e.PollAll(ctx)
				r.WriteText(cmd.OutOrStdout())
				code := exitOK
				for name, s := range r.Stats {
					if s.Deferred > 0 || r.Errs[name] != nil {
						return exitError(exitFailed)
					}
					if s.Quarantined > 0 || s.Held > 0 {
						code = exitQuarantined
					}
				}
				return exitError(code)
			}
			log.Info("mailflow running", "config", g.config, "version", version)
			err = e.Serve(ctx, watch)
			log.Info("mailflow stopped")
			if err != nil {
				log.Error("run", "err", err)
				return exitError(exitFailed)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&once, "once", false, "poll each input once, print a summary, exit")
	cmd.Flags().BoolVar(&watch, "watch", true, "reload when the config file or a script changes")
	return cmd
}

func checkCmd(g *globals) *cobra.Command {
	var opts check.Options
	cmd := &cobra.Command{
		Use:   "check [-c FILE] [--no-secrets] [--connect]",
		Short: "Check a config and its scripts as run would, and report every problem",
		Long: `Does everything run does before it touches mail: reads FILE, checks every
key, name and schedule, makes and initialises every plugin, compiles every
script, looks at the paths (Maildirs, state_dir, script_lib, CA files) and the
secrets it names, and matches the outputs scripts route() to with those
defined. Every problem is reported at once as "file:line: problem", sorted.
Exits 0 when all is well (warnings allowed), 2 when not.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return failed(cmd, exitConfig, err)
			}
			path, err := g.configPath()
			if err != nil {
				return failed(cmd, exitConfig, err)
			}
			r := check.Config(cmd.Context(), path, plugins.Default, log, opts)
			r.WriteText(cmd.OutOrStdout())
			if r.Errors() > 0 {
				return exitError(exitConfig)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&opts.NoSecrets, "no-secrets", false, "read no secret (password files and variables, key files), only check each is named")
	cmd.Flags().BoolVar(&opts.Connect, "connect", false, "also connect to each server, do TLS, log in and log out")
	return cmd
}

// serveStatus starts the status page, the health endpoints and the
// metrics on h.Listen.
func serveStatus(ctx context.Context, h config.HTTP, t *status.Tracker, m *metrics.Metrics, log *slog.Logger, auth func() []metrics.AuthStatus) (*status.Server, error) {
	m.SetAuth(auth) // mailflow_oauth_token_expiry_seconds, mailflow_auth_failures_total
	srv, err := status.NewServer(t, status.Options{DegradedAfter: h.DegradedAfter, AdminTokenFile: h.AdminTokenFile,
		Metrics: m.Handler(), Auth: auth, Log: log})
	if err != nil {
		return nil, err
	}
	addr, err := srv.Serve(ctx, h.Listen, h.TLSCertFile, h.TLSKeyFile)
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if h.TLSCertFile != "" {
		scheme = "https"
	}
	log.Info("serving the status page", "url", scheme+"://"+addr.String()+"/", "health", "/healthz", "metrics", "/metrics")
	return srv, nil
}
