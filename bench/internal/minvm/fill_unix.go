//go:build unix

package main

import (
	"os"
	"syscall"
)

// fillSignal asks for log lines (MINVM_FILL_LOG).
var fillSignal os.Signal = syscall.SIGUSR1
