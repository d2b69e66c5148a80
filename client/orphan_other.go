//go:build !unix

package client

import "os"

func hostGone(hostPid int) bool { return os.Getppid() != hostPid }

// killOrphanedGroup does nothing where there are no process groups.
func killOrphanedGroup() {}
