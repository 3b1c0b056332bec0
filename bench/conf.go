package main

import (
	"os"

	"github.com/BurntSushi/toml"
)

// table is one table of a mailflow config as the bench builds it.
type table = map[string]any

// writeConfig writes a mailflow config file, encoded from values: the
// global keys of top, then its [[input]], [[pipeline]] and [[output]]
// tables. extra, a TOML snippet of global keys (BENCH_MAILFLOW_GLOBAL),
// is decoded and merged in, so that a bench run can try a setting without
// a new flag.
func writeConfig(path string, top table, extra string) error {
	if extra != "" {
		if _, err := toml.Decode(extra, &top); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := toml.NewEncoder(f).Encode(top); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
