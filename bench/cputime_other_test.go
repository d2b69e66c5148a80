//go:build !linux

package bench

import "time"

// processCPU is 0 where /proc does not tell a process's CPU time.
func processCPU(int) time.Duration { return 0 }

// selfCPU is 0 where the benchmarks do not count their own CPU time.
func selfCPU() time.Duration { return 0 }

// childrenCPU is 0 where the benchmarks do not count their children's CPU
// time.
func childrenCPU() time.Duration { return 0 }

// processFaults is 0 where /proc does not tell a process's page faults.
func processFaults(int) int64 { return 0 }
