// Package profile writes CPU and allocation profiles of a run into the files
// MAILFLOW_CPUPROFILE and MAILFLOW_MEMPROFILE name: for the bench, and for
// finding where a run spends its time and memory. Not flags: they are for
// developers, not users.
package profile

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
)

// FromEnv starts a CPU profile into the file MAILFLOW_CPUPROFILE
// names, and has MAILFLOW_MEMPROFILE name a file for the allocation profile
// written at the end, for the bench and for finding where a run spends its
// time and memory; the returned function ends them. Not flags: they are
// for developers, not users.
func FromEnv() func() {
	stopCPU := func() {}
	if path := os.Getenv("MAILFLOW_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "mailflow: MAILFLOW_CPUPROFILE:", err)
		} else {
			stopCPU = func() { pprof.StopCPUProfile(); f.Close() }
		}
	}
	memPath := os.Getenv("MAILFLOW_MEMPROFILE")
	if memPath != "" {
		runtime.MemProfileRate = 64 << 10
	}
	return func() {
		stopCPU()
		if memPath == "" {
			return
		}
		f, err := os.Create(memPath)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mailflow: MAILFLOW_MEMPROFILE:", err)
			return
		}
		defer f.Close()
		pprof.Lookup("allocs").WriteTo(f, 0)
	}
}
