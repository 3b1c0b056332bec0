package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mailflow/mailflow/connectors/oauth"
	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/plugins"
)

func authCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "auth",
		Short: "Log an auth = \"oauth2\" connector in once (Gmail, Microsoft 365), see its tokens",
		Long: `For the inputs and outputs of FILE with auth = "oauth2" (Gmail, Microsoft 365,
any OAuth 2.0 provider; see README, "Gmail and Microsoft 365"). The tokens
are kept in STATE_DIR/tokens/NAME.json (mode 0600); mailflow refreshes them
by itself. Log in again when a refresh token was revoked or lapsed: mailflow
says so in its log, in /healthz and in "auth status".`,
	}
	// users builds the -c config and lists its OAuth connectors.
	users := func(cmd *cobra.Command) (*config.Config, map[string]*oauth.Config, error) {
		cfg, log, err := g.load(cmd)
		if err != nil {
			return nil, nil, err
		}
		s, err := engine.Build(cfg, plugins.Default, log, nil)
		if err != nil {
			return nil, nil, failed(cmd, exitConfig, err)
		}
		s.Close()
		return cfg, oauthUsers(cfg), nil
	}
	// named is the OAuth connector args[0] names.
	named := func(cmd *cobra.Command, name string) (*config.Config, *oauth.Config, error) {
		cfg, all, err := users(cmd)
		if err != nil {
			return nil, nil, err
		}
		if all[name] == nil {
			return nil, nil, failed(cmd, exitConfig, fmt.Errorf("%s has no input or output %q with auth = \"oauth2\"", g.config, name))
		}
		return cfg, all[name], nil
	}
	var device bool
	login := &cobra.Command{
		Use:   "login -c FILE NAME",
		Short: "Log the connector NAME in once",
		Long: `login prints an address to open in a browser, and waits on 127.0.0.1 for the
provider to send the browser back (authorization code with PKCE). With
--device (Microsoft 365; Google's grants no Gmail scope) it prints a code to
enter on any other device instead, for a machine without a browser.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, oc, err := named(cmd, args[0])
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
			defer cancel()
			var tok *oauth.Token
			if device {
				tok, err = oauth.LoginDevice(ctx, oc, cmd.OutOrStdout())
			} else {
				tok, err = oauth.LoginCode(ctx, oc, cmd.OutOrStdout())
			}
			if err == nil {
				tok.Account = oc.Account
				err = oauth.NewStore(cfg.StateDir).Save(args[0], tok)
			}
			if err != nil {
				return failed(cmd, exitFailed, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: logged in as %s; the access token expires %s, and is refreshed by itself\n",
				args[0], tok.Account, tok.Expiry.Local().Format(time.DateTime))
			return nil
		},
	}
	login.Flags().BoolVar(&device, "device", false, "use the device flow: print a code to enter on another device (not for Gmail)")
	cmd.AddCommand(login, &cobra.Command{
		Use:   "status -c FILE",
		Short: "The account, scopes, token expiry, refresh token age, last refresh and error of each",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, all, err := users(cmd)
			if err != nil {
				return err
			}
			oauth.NewStore(cfg.StateDir).WriteStatus(cmd.OutOrStdout(), all)
			return nil
		},
	}, &cobra.Command{
		Use:   "logout -c FILE NAME",
		Short: "Delete the connector's tokens",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, _, err := named(cmd, args[0])
			if err != nil {
				return err
			}
			if err := oauth.NewStore(cfg.StateDir).Delete(args[0]); err != nil {
				return failed(cmd, exitFailed, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: logged out (its tokens are deleted)\n", args[0])
			return nil
		},
	})
	return cmd
}

// oauthUsers are the connectors of cfg that log in with OAuth, by name.
func oauthUsers(cfg *config.Config) map[string]*oauth.Config {
	out := map[string]*oauth.Config{}
	add := func(name string, p any) {
		if u, ok := p.(oauth.User); ok && u.OAuth() != nil {
			out[name] = u.OAuth()
		}
	}
	for _, ic := range cfg.Inputs {
		add(ic.Name, ic.Plugin)
	}
	for _, oc := range cfg.Outputs {
		add(oc.Name, oc.Plugin)
	}
	return out
}
