package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// profileFromEnv starts a CPU profile into the file MAILFLOW_CPUPROFILE
// names, for the bench and for finding where a run spends its time; the
// returned function ends it. Not a flag: it is for developers, not users.
func profileFromEnv() func() {
	path := os.Getenv("MAILFLOW_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mailflow: MAILFLOW_CPUPROFILE:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "mailflow: MAILFLOW_CPUPROFILE:", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
