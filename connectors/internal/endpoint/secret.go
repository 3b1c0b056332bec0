package endpoint

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// ResolveSecret returns a secret given in one of three ways: inline, from an
// environment variable (the *_env key), or from a file (the *_file key; a
// trailing newline is removed). Giving more than one is an error, so that a
// stale inline value cannot silently win.
func ResolveSecret(key, inline, envName, fileName string) (string, error) {
	if err := CheckSecret(key, inline, envName, fileName); err != nil {
		return "", err
	}
	switch {
	case envName != "":
		v, ok := os.LookupEnv(envName)
		if !ok {
			return "", fmt.Errorf("%s_env: environment variable %s is not set", key, envName)
		}
		return v, nil
	case fileName != "":
		b, err := os.ReadFile(fileName)
		if err != nil {
			return "", fmt.Errorf("%s_file: %w", key, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return inline, nil
}

// CheckSecret checks that a secret is given at most one way, without
// reading it: what "mailflow check --no-secrets" checks.
func CheckSecret(key, inline, envName, fileName string) error {
	set := 0
	for _, v := range []string{inline, envName, fileName} {
		if v != "" {
			set++
		}
	}
	if set > 1 {
		return fmt.Errorf("give only one of %s, %s_env and %s_file", key, key, key)
	}
	return nil
}

// ErrNoSecret can be wrapped by plugins that need a secret that was not given.
var ErrNoSecret = errors.New("no secret given")
