package bench

import (
	"context"
	"os/exec"
	"syscall"
	"testing"

	"github.com/vmre/vmre/launcher"
)

// BenchmarkStopConcurrent stops 16 VMs at once, from the first SIGTERM
// (Runtime.Stop for vmre) until all are reaped (Done). The VMs are launched,
// and settled (each has answered a call), outside the timed part. The floor signals its plugins one
// after the other and then waits for each; vmre calls Stop on each runtime
// (which returns at once) and then waits on each Done.
//
// init-only is the floor's stop for the minimal VM's binary told to do what
// the floor plugin does (see BenchmarkLaunch): what a process of the VM's
// size costs to stop, the engine aside. vmre-subreaper is vmre under a
// Subreaper, as in a node.
func BenchmarkStopConcurrent(b *testing.B) {
	b.Run("floor", func(b *testing.B) { stopFloors(b, newFloor(b)) })
	b.Run("init-only", func(b *testing.B) { stopFloors(b, newInitOnly(b)) })
	stopVMREs := func(b *testing.B) {
		h := newVMRE(b, launcher.Config{})
		for b.Loop() {
			b.StopTimer()
			rts, err := h.launchSettled(concurrency)
			if err != nil {
				for _, rt := range rts {
					h.stop(rt)
				}
				b.Fatal(err)
			}
			b.StartTimer()
			for _, rt := range rts {
				rt.Stop(context.Background())
			}
			for _, rt := range rts {
				if err := h.stop(rt); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.Run("vmre", stopVMREs)
	b.Run("vmre-subreaper", func(b *testing.B) { // as in a node; see BenchmarkStop
		sr, err := launcher.StartSubreaper(nil)
		if err != nil {
			b.Skip(err)
		}
		defer sr.Close()
		stopVMREs(b)
	})
}

// stopFloors times, per op, the stop of 16 plugins that f started.
func stopFloors(b *testing.B, f *floor) {
	for b.Loop() {
		b.StopTimer()
		cmds, err := all(concurrency, func(int) (*exec.Cmd, error) { return f.start() })
		if err != nil {
			for _, cmd := range cmds {
				f.stop(cmd)
			}
			b.Fatal(err)
		}
		b.StartTimer()
		for _, cmd := range cmds {
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				b.Fatal(err)
			}
		}
		for _, cmd := range cmds {
			if err := cmd.Wait(); err != nil {
				b.Fatalf("floor plugin: %v", err)
			}
		}
	}
}
