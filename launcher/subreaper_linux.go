package launcher

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vmre/vmre/internal/proctree"
)

// maxReapPasses bounds Close's rounds of killing adopted processes: each
// round's dead hand their own children to this process.
const maxReapPasses = 64

// Subreaper makes this process the child subreaper of its descendants
// (PR_SET_CHILD_SUBREAPER): a process of a VM's tree whose parent dies is
// handed to the host rather than to init, so that the VM's stop finds and
// ends it (docs/RELIABILITY.md, "No survivors"), and the Subreaper reaps
// it once it has exited. A node starts one at start, before it launches
// anything, and closes it at the end, after its VMs have stopped.
//
// It reaps only what it adopted. The VMs of the process's Launchers are
// left to their Runtimes, which reap each by its pid (a wait for any child
// would take their exit statuses). So are other children in the process's
// own process group and session: those that code of the process started
// with os/exec and waits for. A child that code of the process started in
// a group or session of its own (Setpgid, Setsid), other than through a
// Launcher, would be taken for an adopted one: a process that starts such
// children should not run a Subreaper.
type Subreaper struct {
	closeOnce sync.Once
}

// reaper is the process's one reaping goroutine, shared by its
// Subreapers: it runs from the first StartSubreaper to the last Close.
var reaper struct {
	mu        sync.Mutex
	refs      int
	log       *slog.Logger
	pgid, sid int
	sigchld   chan os.Signal
	stop      chan struct{}
	done      chan struct{}
}

// StartSubreaper makes this process a child subreaper and reaps its
// adopted processes, as they exit, until the last Subreaper of the process
// is closed: several nodes in one process share one. log (nil: discard)
// gets a debug record for each reaped process; the first Subreaper's log
// serves.
func StartSubreaper(log *slog.Logger) (*Subreaper, error) {
	reaper.mu.Lock()
	defer reaper.mu.Unlock()
	if reaper.refs > 0 {
		reaper.refs++
		return &Subreaper{}, nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become the child subreaper (PR_SET_CHILD_SUBREAPER): %w", err)
	}
	sid, _ := unix.Getsid(0)
	reaper.refs, reaper.log, reaper.pgid, reaper.sid = 1, log, unix.Getpgrp(), sid
	reaper.sigchld, reaper.stop, reaper.done = make(chan os.Signal, 1), make(chan struct{}), make(chan struct{})
	signal.Notify(reaper.sigchld, syscall.SIGCHLD)
	subreaping.Store(true)
	go runReaper(reaper.sigchld, reaper.stop, reaper.done)
	return &Subreaper{}, nil
}

// runReaper reaps adopted processes at each SIGCHLD until stop.
func runReaper(sigchld <-chan os.Signal, stop, done chan struct{}) {
	defer close(done)
	reapAdopted() // any that exited before the signal was watched
	for {
		select {
		case <-sigchld:
			reapAdopted()
		case <-stop:
			return
		}
	}
}

// adopted lists the children of this process that it adopted: not a VM of
// its Launchers, nor in its own group and session.
func adopted() []proctree.Stat {
	var out []proctree.Stat
	for _, c := range proctree.Children(os.Getpid()) {
		if isOwnChild(c) {
			continue
		}
		st, err := proctree.ReadStat(c)
		if err != nil || st.Pgid == reaper.pgid && st.Sid == reaper.sid {
			continue
		}
		out = append(out, st)
	}
	return out
}

// reapAdopted reaps the adopted processes that have exited. It holds the
// starts of VMs off while it looks: a VM that dies the moment it is forked
// is listed as the Launcher's before it is seen here.
func reapAdopted() {
	ownChildren.starting.Lock()
	defer ownChildren.starting.Unlock()
	for _, st := range adopted() {
		if !st.Zombie() {
			continue
		}
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(st.Pid, &ws, syscall.WNOHANG, nil)
		if err != nil || pid != st.Pid {
			continue
		}
		reaper.log.Debug("reaped an adopted process", slog.Int("pid", pid), slog.String("exit", exitOf(ws, nil, 0, StageNone).String()))
	}
}

// Close lets this Subreaper go. The last one of the process ends what is
// left of the adopted processes with SIGKILL, reaps them, and stops
// reaping: close it after the VMs have stopped, whose stops end what is
// theirs gracefully. Close is idempotent.
func (s *Subreaper) Close() error {
	var err error
	s.closeOnce.Do(func() {
		reaper.mu.Lock()
		defer reaper.mu.Unlock()
		if reaper.refs--; reaper.refs > 0 {
			return
		}
		close(reaper.stop)
		<-reaper.done
		signal.Stop(reaper.sigchld)
		for range maxReapPasses {
			left := adopted()
			if len(left) == 0 {
				break
			}
			for _, st := range left {
				if !st.Zombie() {
					reaper.log.Info("killing a process a VM left behind", slog.Int("pid", st.Pid))
					proctree.Signal(st, syscall.SIGKILL)
				}
			}
			for _, st := range left {
				var ws syscall.WaitStatus
				for {
					if _, werr := syscall.Wait4(st.Pid, &ws, 0, nil); werr != syscall.EINTR {
						break
					}
				}
			}
		}
		if left := adopted(); len(left) > 0 {
			err = fmt.Errorf("%d processes left behind by VMs survived %d rounds of SIGKILL", len(left), maxReapPasses)
		}
		// Orphans go to init again: nothing here reaps them any more.
		unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
		subreaping.Store(false)
	})
	return err
}
