package launcher

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/vmre/vmre"
)

// drainTimeout bounds how long output is still read after the VM is reaped:
// a process outside the VM's group may hold the pipes open, and the host
// must not wait on it.
const drainTimeout = 200 * time.Millisecond

// Runtime is one running VM. Its methods are safe for concurrent use.
type Runtime struct {
	name    string
	cmd     *exec.Cmd
	s       *settings
	log     *slog.Logger // carries vm and pid
	started time.Time
	tail    tail

	// Set once by the launch, before the Runtime is shared.
	status    vmre.Status
	version   uint
	handshake time.Duration
	shutdown  func(ctx context.Context) error // the legacy /vm.VM/Shutdown call, or nil
	onStop    func()                          // ends the launch in the engine

	exited     context.Context // done once the VM is reaped and its pipes closed
	markExited context.CancelFunc
	stopOnce   sync.Once
	stopWG     sync.WaitGroup // the legacy shutdown call, when one runs

	mu   sync.Mutex
	gone bool // the VM has exited: no more signals, no new stop goroutine
	// Callbacks of AfterExit, run by the wait goroutine before Done closes.
	afterExit map[int]func()
	nextAfter int
	stage     Stage
	exit      Exit
	done      bool
}

// start execs the VM with its output piped into the host's logger, and
// starts the one goroutine that waits for it and the two that read it.
func (r *Runtime) start(cmd *exec.Cmd, st *starter) error {
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return err
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	prepare(cmd, r.s)

	err = st.start(cmd)
	// The child has its own copies of the write ends; closing ours now means
	// the readers see EOF as soon as the VM's processes close theirs.
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return err
	}
	r.started = time.Now()
	r.cmd = cmd
	r.status.Pid = cmd.Process.Pid
	r.log = r.s.Logger.With(slog.String("vm", r.name), slog.Int("pid", r.status.Pid))
	r.exited, r.markExited = context.WithCancel(context.Background())

	var readers sync.WaitGroup
	readers.Add(2)
	go func() {
		defer readers.Done()
		(&logPipe{log: r.log.With(slog.String("stream", "stdout")), raw: r.s.Stdout}).run(outR)
	}()
	go func() {
		defer readers.Done()
		(&logPipe{log: r.log.With(slog.String("stream", "stderr")), raw: r.s.Stderr, tail: &r.tail}).run(errR)
	}()
	go r.wait(outR, errR, &readers)
	return nil
}

// wait reaps the VM, kills what is left of its process group, drains and
// closes its pipes, and marks it exited.
func (r *Runtime) wait(outR, errR *os.File, readers *sync.WaitGroup) {
	err := reap(r.cmd, r.markGone)
	ran := time.Since(r.started)

	deadline := time.Now().Add(drainTimeout)
	outR.SetReadDeadline(deadline)
	errR.SetReadDeadline(deadline)
	readers.Wait()
	outR.Close()
	errR.Close()
	r.stopWG.Wait()

	r.mu.Lock()
	r.exit = exitOf(r.cmd.ProcessState, err, ran, r.stage)
	r.done = true
	exit := r.exit
	r.mu.Unlock()
	if r.onStop != nil {
		r.onStop()
	}
	level := slog.LevelInfo
	if !exit.Success() && exit.Stage == StageNone || exit.Killed() {
		level = slog.LevelWarn
	}
	r.log.LogAttrs(context.Background(), level, "vm exited", slog.String("exit", exit.String()))
	r.mu.Lock()
	afterExit := r.afterExit
	r.afterExit = nil
	r.mu.Unlock()
	for _, f := range afterExit {
		f()
	}
	r.markExited()
}

// Status returns the VM's pid and RPC address.
func (r *Runtime) Status() vmre.Status { return r.status }

// Name is the VM's name in logs.
func (r *Runtime) Name() string { return r.name }

// ProtocolVersion is the version agreed in the handshake.
func (r *Runtime) ProtocolVersion() uint { return r.version }

// Started is when the VM was started.
func (r *Runtime) Started() time.Time { return r.started }

// HandshakeDuration is the time from exec to the VM's Initialize.
func (r *Runtime) HandshakeDuration() time.Duration { return r.handshake }

// Done is closed once the VM has been reaped and its pipes closed.
func (r *Runtime) Done() <-chan struct{} { return r.exited.Done() }

// AfterExit arranges for f to run once the VM has ended, before Done is
// closed; for a VM already done, f runs at once in a goroutine of its own.
// stop cancels f if it has not run yet and reports whether it did so.
func (r *Runtime) AfterExit(f func()) (stop func() bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		go f()
		return func() bool { return false }
	}
	id := r.nextAfter
	r.nextAfter++
	if r.afterExit == nil {
		r.afterExit = make(map[int]func())
	}
	r.afterExit[id] = f
	return func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		_, pending := r.afterExit[id]
		delete(r.afterExit, id)
		return pending
	}
}

// Exit returns how the VM ended, and false while it is still running.
func (r *Runtime) Exit() (Exit, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exit, r.done
}

// Wait blocks until the VM is done or ctx ends, and returns how it ended.
func (r *Runtime) Wait(ctx context.Context) (Exit, error) {
	select {
	case <-r.Done():
		e, _ := r.Exit()
		return e, nil
	case <-ctx.Done():
		return Exit{}, ctx.Err()
	}
}

// LastStderr returns the last lines the VM wrote to stderr, oldest first.
func (r *Runtime) LastStderr() []string { return r.tail.lines() }

// Stop starts the stop sequence and returns at once: SIGTERM to the VM's
// process group (after /vm.VM/Shutdown with LegacyShutdown), then SIGKILL
// when the graceful timeout passes or ctx ends, whichever is first. Stop is
// idempotent; wait on Done for the end. On systems without SIGTERM it kills
// at once.
//
// Stop keeps watching ctx after it returns: a ctx that ends before the VM
// does (a deferred cancel, a request's context) cuts the grace short.
// Pass a context that lives until Done, such as context.Background().
func (r *Runtime) Stop(ctx context.Context) {
	r.stopOnce.Do(func() { r.stop(ctx) })
}

func (r *Runtime) stop(ctx context.Context) {
	if r.exited.Err() != nil {
		return
	}
	r.log.Debug("stopping vm", "graceful_timeout", r.s.GracefulTimeout)
	if !canTerminate {
		r.endLease()
		r.signal(StageKill, "this system has no SIGTERM")
		return
	}
	timer := time.AfterFunc(r.s.GracefulTimeout, func() { r.signal(StageKill, "the graceful timeout passed") })
	stopCtx := context.AfterFunc(ctx, func() { r.signal(StageKill, "the stop's context ended") })
	context.AfterFunc(r.exited, func() {
		timer.Stop()
		stopCtx()
	})
	if r.shutdown == nil {
		// SIGTERM before the end of the lease: a VM that saw its lease end
		// first could exit before the signal came, and seem to have ended
		// on its own, or return from client.Serve, stop catching SIGTERM,
		// and die of it.
		r.signal(StageTerm, "")
		r.endLease()
		return
	}
	r.endLease()
	r.mu.Lock()
	if r.gone || r.stage >= StageShutdown {
		r.mu.Unlock()
		return
	}
	r.stage = StageShutdown
	r.stopWG.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.stopWG.Done()
		callCtx, cancel := context.WithTimeout(ctx, r.s.GracefulTimeout)
		defer cancel()
		if err := r.shutdown(callCtx); err != nil {
			r.log.Warn("legacy shutdown call failed; sending SIGTERM", "error", err)
		}
		r.signal(StageTerm, "")
	}()
}

// markGone records that the VM has exited, before it is reaped: from then on
// its pid may be reused, so it must not be signalled.
func (r *Runtime) markGone() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gone = true
}

// endLease ends the VM's launch in the engine, and so its lease: a VM on
// client.Serve starts shutting down.
func (r *Runtime) endLease() {
	if r.onStop != nil {
		r.onStop()
	}
}

// kill sends SIGKILL at once, for a VM that gets no graceful stop.
func (r *Runtime) kill(reason string) {
	r.stopOnce.Do(func() {
		if r.onStop != nil {
			r.onStop()
		}
		r.signal(StageKill, reason)
	})
}

// signal moves the stop sequence on to stage s, unless it is already there
// or further, or the VM is gone. reason says why a SIGKILL is sent. The
// signal is sent under the lock that markGone takes, so it cannot reach a
// process that has taken the pid of a reaped VM.
func (r *Runtime) signal(s Stage, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gone || r.stage >= s {
		return
	}
	r.stage = s
	var err error
	if s == StageKill {
		r.log.Warn("sending SIGKILL", "reason", reason, "graceful_timeout", r.s.GracefulTimeout)
		err = kill(r.status.Pid)
	} else {
		err = terminate(r.status.Pid)
	}
	if err != nil {
		r.log.Warn("signal failed", "stage", s.String(), "error", err)
	}
}
