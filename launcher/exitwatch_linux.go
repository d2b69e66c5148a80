package launcher

import (
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// exitWatch learns of the exits of a Launcher's VMs from SIGCHLD, for all of
// them at once: a running VM costs it neither a file descriptor (as a pidfd
// in the runtime's poller would) nor an OS thread (as a goroutine blocked in
// waitid would), nor a goroutine of its own until it exits. On each SIGCHLD
// it asks, without reaping, which of the VMs it waits for have exited. Its
// one goroutine runs from the Launcher's first VM until the Launcher is
// closed and its last VM has exited.
type exitWatch struct {
	mu      sync.Mutex
	waiting map[int]func() // by pid: what to do once the VM has exited
	wake    chan os.Signal // the running goroutine's; nil when none runs
	done    chan struct{}  // closed when the running goroutine ends
	closed  bool
}

// notify arranges for exited to be called, on the watch's goroutine, once
// the process pid, a child of this one, has exited; it is left for exited
// to reap. exited must not block.
func (w *exitWatch) notify(pid int, exited func()) {
	w.mu.Lock()
	if w.waiting == nil {
		w.waiting = make(map[int]func())
	}
	w.waiting[pid] = exited
	wake := w.wake
	if wake == nil {
		wake = make(chan os.Signal, 1)
		signal.Notify(wake, syscall.SIGCHLD)
		w.wake, w.done = wake, make(chan struct{})
		go w.run(wake, w.done)
	}
	w.mu.Unlock()
	// Look at once: the VM may have exited before it was waited for.
	kick(wake)
}

// close ends the watch's goroutine once it waits for no VM, and waits for
// it when it waits for none already.
func (w *exitWatch) close() {
	w.mu.Lock()
	w.closed = true
	wake, done, idle := w.wake, w.done, len(w.waiting) == 0
	w.mu.Unlock()
	if wake == nil || !idle {
		return
	}
	kick(wake)
	<-done
}

// kick makes the watch look at its VMs.
func kick(wake chan os.Signal) {
	select {
	case wake <- syscall.SIGCHLD:
	default:
	}
}

// run answers each SIGCHLD until the watch is closed and waits for no VM.
// It does not stop between VMs: signal.Stop waits for a delivery under way
// in a loop of runtime.Gosched, which costs a busy host milliseconds of
// CPU, and a SIGCHLD is always under way when the last VM has exited.
func (w *exitWatch) run(wake chan os.Signal, done chan struct{}) {
	defer close(done)
	for range wake {
		w.mu.Lock()
		for pid, exited := range w.waiting {
			if hasExited(pid) {
				exited()
				delete(w.waiting, pid)
			}
		}
		if w.closed && len(w.waiting) == 0 {
			signal.Stop(wake)
			w.wake = nil
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
	}
}

// hasExited reports whether the child pid has exited, without reaping it.
// A pid that is no child of this process (reaped by someone else) counts as
// exited: there is nothing left to wait for.
func hasExited(pid int) bool {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT|unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		return err != nil || info.Signo != 0 // Signo is 0 while it runs
	}
}
