package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Places lists, in order, where a config is looked for when none is
// given (fetchmail's ~/.fetchmailrc habit): $MAILFLOW_CONFIG,
// ./mailflow.toml, $XDG_CONFIG_HOME/mailflow/mailflow.toml (XDG's
// default ~/.config when unset), /etc/mailflow/mailflow.toml.
func Places() []string {
	var places []string
	if env := os.Getenv("MAILFLOW_CONFIG"); env != "" {
		places = append(places, env)
	}
	places = append(places, "mailflow.toml")
	xdg := os.Getenv("XDG_CONFIG_HOME")
	if xdg == "" {
		if home, err := os.UserHomeDir(); err == nil {
			xdg = filepath.Join(home, ".config")
		}
	}
	if xdg != "" {
		places = append(places, filepath.Join(xdg, "mailflow", "mailflow.toml"))
	}
	return append(places, "/etc/mailflow/mailflow.toml")
}

// Find is the first of Places that exists. $MAILFLOW_CONFIG, when set,
// must exist: a variable naming a missing file is a mistake to report,
// not a reason to read another config.
func Find() (string, error) {
	places := Places()
	if env := os.Getenv("MAILFLOW_CONFIG"); env != "" {
		if _, err := os.Stat(env); err != nil {
			return "", fmt.Errorf("MAILFLOW_CONFIG names %s: %w", env, err)
		}
		return env, nil
	}
	for _, p := range places {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no config given (-c FILE) and none found; looked for " + strings.Join(places, ", "))
}
