package launcher_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"

	"github.com/vmre/vmre/internal/vmretest"
)

// Settings of the processes of these tests.
const (
	// runawayNameKey names a "runaway" VM's runaway in its line.
	runawayNameKey = "VMRE_TEST_RUNAWAY_NAME"
	// runawayBareKey makes a "runaway" VM's runaway start with the test's
	// environment rather than the VM's: without the VM's token.
	runawayBareKey = "VMRE_TEST_RUNAWAY_BARE"
)

func init() {
	// runaway: starts, through a child that exits at once, a grandchild
	// in a session of its own that ignores SIGTERM: a daemon's double
	// fork, which leaves no parent chain from the VM to it. It prints
	// "runaway-NAME=PID" once that child has exited, then serves.
	vms["runaway"] = func([]string) int {
		forker := exec.Command(os.Args[0])
		forker.Env = append(os.Environ(), vmretest.ModeKey+"=forker") // the VM's own, token included
		if os.Getenv(runawayBareKey) != "" {
			forker = vmretest.Command("forker") // the test's: no token
			forker.Env = append(forker.Env, runawayNameKey+"="+os.Getenv(runawayNameKey))
		}
		forker.Stdout, forker.Stderr = os.Stdout, os.Stderr
		if err := forker.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "forker:", err)
			return 1
		}
		return serve(context.Background(), pingMux())
	}
	// forker: starts an "orphan" in a session of its own, with its own
	// environment, stdout and stderr (the VM's pipes), says
	// "runaway-NAME=PID", and exits.
	vms["forker"] = func([]string) int {
		pid, err := startOrphan(true, append(os.Environ(), vmretest.ModeKey+"=orphan"), os.Stdout, os.Stderr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("runaway-%s=%d\n", os.Getenv(runawayNameKey), pid)
		return 0
	}
}
