//go:build !unix

package main

import "os"

// fillSignal is nil: there is no SIGUSR1 to ask for log lines with.
var fillSignal os.Signal
