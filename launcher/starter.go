package launcher

import (
	"fmt"
	"os/exec"
	"runtime"
	"sync"

	"github.com/vmre/vmre"
)

// errClosed is the error of a launch on a closed Launcher.
var errClosed = fmt.Errorf("%w: the launcher is closed", vmre.ErrInvalidConfig)

// starter runs every cmd.Start of a Launcher on one goroutine locked to its
// OS thread for the Launcher's life. On Linux a VM's parent-death signal
// fires when the thread that forked it ends, and a thread the scheduler
// shares can be ended by any goroutine that locks it and returns without
// unlocking (network namespace code does that on purpose).
type starter struct {
	startCmd func(*exec.Cmd) error // Config.Start, or (*exec.Cmd).Start

	mu     sync.Mutex
	closed bool
	reqs   chan startRequest
	done   chan struct{}
}

type startRequest struct {
	cmd *exec.Cmd
	err chan<- error
}

func newStarter(start func(*exec.Cmd) error) *starter {
	if start == nil {
		start = (*exec.Cmd).Start
	}
	s := &starter{startCmd: start, reqs: make(chan startRequest), done: make(chan struct{})}
	go s.run()
	return s
}

func (s *starter) run() {
	defer close(s.done)
	runtime.LockOSThread()
	// Unlocked before the goroutine ends, the thread lives on in the
	// scheduler's pool, so the VMs it started keep their parent thread.
	defer runtime.UnlockOSThread()
	for req := range s.reqs {
		err := s.startCmd(req.cmd)
		if err == nil && req.cmd.Process == nil {
			err = fmt.Errorf("%w: launcher.Config.Start returned no error and no started process", vmre.ErrInvalidConfig)
		}
		req.err <- err
	}
}

// start starts cmd on the starter's thread, with Config.Start when set.
func (s *starter) start(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errClosed
	}
	s.reqs <- startRequest{cmd: cmd, err: errc}
	s.mu.Unlock()
	return <-errc
}

// close ends the starter's goroutine and waits for it. It is idempotent.
func (s *starter) close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.reqs)
	}
	s.mu.Unlock()
	<-s.done
}
