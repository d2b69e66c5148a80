package launcher

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/vmpeer"
)

// After the VM is reaped, its pipes are read to their end, however slow the
// host's handler: what the VM wrote before it exited is logged. A pipe that
// a writer still holds open, a process outside the VM's group, and that is
// found empty after drainTimeout, is one the host must not wait on: its
// reading stops. One that such a process still fills after maxDrain stops
// too.
const (
	drainTimeout = 200 * time.Millisecond
	maxDrain     = 5 * time.Second
)

// Runtime is one running VM. Its methods are safe for concurrent use.
type Runtime struct {
	name    string
	path    string
	cmd     *exec.Cmd
	s       *settings
	hooks   hookList
	outputs *outputs     // the Launcher's line counts
	log     *slog.Logger // carries vm and pid: the VM's output goes there
	started time.Time
	tail    tail         // stderr's last lines
	output  tail         // the last lines of stdout and stderr, marked
	pid     atomic.Int64 // status.Pid, for the engine's goroutines

	// Set once by the launch, before the Runtime is shared.
	status    vmre.Status
	version   uint
	handshake time.Duration
	shutdown  func(ctx context.Context) error // the legacy /vm.VM/Shutdown call, or nil
	onStop    func()                          // ends the launch in the engine
	tree      *tree                           // what of the VM's tree its group's signals miss

	// The lease pipe: the VM's end until it has started, the host's end
	// until the lease ends (endLease) or the VM has exited; nil without one.
	leaseVMEnd *os.File
	lease      *os.File
	leaseOnce  sync.Once

	forget func()     // takes the VM off its Launcher's list once it has exited
	exits  *exitWatch // the Launcher's

	exited     context.Context // done once the VM is reaped and its pipes closed
	markExited context.CancelFunc
	stopOnce   sync.Once
	stopWG     sync.WaitGroup // the legacy shutdown call, when one runs

	// emitMu keeps the StopStage events in the order of their stages, and
	// before Exited: it is taken under mu, which orders the stages, and held
	// while they are told.
	emitMu sync.Mutex

	mu    sync.Mutex
	gone  bool // the VM has exited: no more signals, no new stop goroutine
	stage Stage
	exit  Exit
	done  bool
	// The host's client of the VM's server, made once the handshake has
	// completed, and closed once the VM has exited.
	transport    *vmpeer.Transport
	client       *http.Client
	clientClosed bool
}

// start execs the VM with its output piped into the host's logger, and
// starts the one goroutine that waits for it and the two that read it.
// Started or not, the VM's end of the lease pipe is closed on return (the
// child has its own copy: the VM's is the only one left), and the host's
// too when the VM did not start.
func (r *Runtime) start(cmd *exec.Cmd, st *starter, l *Launcher, marker string) (err error) {
	defer func() {
		if r.leaseVMEnd != nil {
			r.leaseVMEnd.Close()
		}
		if err != nil {
			r.closeLease(false)
		}
	}()
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

	err = startChild(func() (int, error) {
		if err := st.start(cmd); err != nil {
			return 0, err
		}
		return cmd.Process.Pid, nil
	})
	// The child has its own copies of the write ends; closing ours now means
	// the readers see EOF as soon as the VM's processes close theirs.
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return err
	}
	l.remember(r)
	r.forget = func() { l.forget(r) }
	r.exits = &l.exits
	r.started = time.Now()
	r.cmd = cmd
	r.status.Pid = cmd.Process.Pid
	r.pid.Store(int64(r.status.Pid))
	r.tree = &tree{pid: r.status.Pid, marker: marker}
	detach(cmd)
	r.log = r.s.Logger.With(slog.String("vm", r.name), slog.Int("pid", r.status.Pid))
	r.exited, r.markExited = context.WithCancel(context.Background())

	counts := r.outputs.of(r.name)
	// The last reader to reach the end of its pipe closes readersDone.
	readersDone := make(chan struct{})
	var reading atomic.Int32
	reading.Store(2)
	readerDone := func() {
		if reading.Add(-1) == 0 {
			close(readersDone)
		}
	}
	go func() {
		defer readerDone()
		(&logPipe{log: r.log.With(slog.String("stream", "stdout")), raw: r.s.Stdout, output: &r.output, mark: "stdout: ",
			drop: r.dropped("stdout"), counts: &counts.stdout}).run(outR)
	}()
	go func() {
		defer readerDone()
		(&logPipe{log: r.log.With(slog.String("stream", "stderr")), raw: r.s.Stderr, tail: &r.tail, output: &r.output, mark: "stderr: ",
			drop: r.dropped("stderr"), counts: &counts.stderr}).run(errR)
	}()
	afterExit(r.status.Pid, r.exits, func() { r.wait(outR, errR, readersDone) })
	return nil
}

// wait reaps the VM, kills what is left of its process group, drains and
// closes its pipes, and marks it exited. It runs once the VM has exited
// (on Linux; elsewhere it waits for the exit itself).
func (r *Runtime) wait(outR, errR *os.File, readersDone <-chan struct{}) {
	ws, err := reap(r.cmd, r.status.Pid, r.markGone, r.tree.kill)
	reapedChild(r.status.Pid)
	ran := time.Since(r.started)

	drain(readersDone, outR, errR)
	outR.Close()
	errR.Close()
	r.stopWG.Wait()
	r.closeLease(false)
	r.forget()

	r.mu.Lock()
	transport := r.transport
	r.clientClosed = true
	r.mu.Unlock()
	if transport != nil {
		transport.Close(errExited)
	}

	r.mu.Lock()
	r.exit = exitOf(ws, err, ran, r.stage)
	r.done = true
	exit := r.exit
	r.mu.Unlock()
	if r.onStop != nil {
		r.onStop()
	}
	// After the StopStage event of the last signal sent, which the signal
	// may have outrun: signal tells its stage under emitMu.
	r.emitMu.Lock()
	r.hooks.exited(ExitInfo{VM: r.name, Pid: r.status.Pid, Exit: exit})
	r.emitMu.Unlock()
	r.markExited()
}

// drain waits until the readers of a VM's pipes, which the VM has closed by
// exiting, are done: each reader returns at the end of its pipe, or at a
// read deadline drain sets once its pipe, still held open by a writer, is
// empty after drainTimeout (or after maxDrain, full or not). A pipe that no
// writer holds gets no deadline: its reader, busy with the lines it has
// read, reaches its end.
func drain(done <-chan struct{}, pipes ...*os.File) {
	tick := time.NewTicker(drainTimeout)
	defer tick.Stop()
	start := time.Now()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		for _, p := range pipes {
			if readable, held := pipeState(p); held && (!readable || time.Since(start) >= maxDrain) {
				p.SetReadDeadline(time.Now())
			}
		}
	}
}

// dropped returns what the pipe of one stream calls when output is lost.
func (r *Runtime) dropped(stream string) func(truncated int, unread bool) {
	return func(truncated int, unread bool) {
		r.hooks.outputDropped(OutputDropInfo{VM: r.name, Pid: r.status.Pid, Stream: stream, Truncated: truncated, Unread: unread})
	}
}

// Status returns the VM's pid and RPC address.
func (r *Runtime) Status() vmre.Status { return r.status }

// ProtocolVersion is the version agreed in the handshake.
func (r *Runtime) ProtocolVersion() uint { return r.version }

// Started is when the VM was started.
func (r *Runtime) Started() time.Time { return r.started }

// HandshakeDuration is the time from exec to the VM's Initialize.
func (r *Runtime) HandshakeDuration() time.Duration { return r.handshake }

// Done is closed once the VM has been reaped and its pipes closed.
func (r *Runtime) Done() <-chan struct{} { return r.exited.Done() }

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

// LastOutput returns the last lines the VM wrote to stdout and stderr, in
// the order they were read, each after its stream: "stdout: ..." or
// "stderr: ...". A VM that gives its reason on stdout before it exits is
// heard there.
func (r *Runtime) LastOutput() []string { return r.output.lines() }

// Stop starts the stop sequence and returns at once: SIGTERM to the VM's
// process group (after /vm.VM/Shutdown with LegacyShutdown), then SIGKILL
// when the graceful timeout passes or ctx ends, whichever is first. Stop is
// idempotent; wait on Done for the end. On systems without SIGTERM it kills
// at once.
//
// Stop keeps watching ctx after it returns: a ctx that ends before the VM
// does (a deferred cancel, a request's context) cuts the grace short.
// Pass a context that lives until Done, such as context.Background().
func (r *Runtime) Stop(ctx context.Context) { r.stopFor(ctx, ReasonStop) }

// Shutdown stops the VM as Stop does and waits until it is reaped. It
// returns nil when the VM exited within the graceful timeout, and a
// *LaunchError with PhaseStop when it had to be killed; when ctx ends first
// the VM is killed, and Shutdown waits for the reap all the same.
func (r *Runtime) Shutdown(ctx context.Context) error {
	r.Stop(ctx)
	<-r.Done()
	exit, _ := r.Exit()
	if exit.Stage != StageKill {
		return nil
	}
	return &LaunchError{Phase: PhaseStop, VM: r.name, Path: r.path, Pid: r.status.Pid,
		Timeout: r.s.GracefulTimeout, Exit: &exit, Stderr: r.LastStderr(), Output: r.LastOutput(), Err: errKilled}
}

func (r *Runtime) stopFor(ctx context.Context, reason StopReason) {
	r.stopOnce.Do(func() { r.stop(ctx, reason) })
}

func (r *Runtime) stop(ctx context.Context, reason StopReason) {
	if r.exited.Err() != nil {
		return
	}
	if !canTerminate {
		r.endLease()
		r.signal(StageKill, ReasonNoSIGTERM, nil)
		return
	}
	timer := time.AfterFunc(r.s.GracefulTimeout, func() { r.signal(StageKill, ReasonGraceExpired, nil) })
	stopCtx := context.AfterFunc(ctx, func() { r.signal(StageKill, ReasonContextEnded, nil) })
	context.AfterFunc(r.exited, func() {
		timer.Stop()
		stopCtx()
	})
	if r.shutdown == nil {
		// SIGTERM before the end of the lease: a VM that saw its lease end
		// first could exit before the signal came, and seem to have ended
		// on its own, or return from client.Serve, stop catching SIGTERM,
		// and die of it. The rest of the tree is found before the VM is
		// told (once it has exited, no parent chain leads from it to its
		// descendants), on a goroutine of the stop's, so that Stop returns
		// at once and the stops of many VMs share their reading of /proc.
		r.mu.Lock()
		if r.gone {
			r.mu.Unlock()
			return
		}
		r.stopWG.Add(1) // before the reap, which waits for it: the VM is not gone
		r.mu.Unlock()
		go func() {
			defer r.stopWG.Done()
			tree := r.tree.find()
			r.signal(StageTerm, reason, nil)
			r.endLease()
			r.closeIdle()
			signalAll(tree, termSignals...)
		}()
		return
	}
	r.endLease()
	r.mu.Lock()
	if r.gone || r.stage >= StageShutdown {
		r.mu.Unlock()
		return
	}
	r.stage = StageShutdown
	resume(r.status.Pid) // a VM stopped by SIGSTOP could not answer the Shutdown call
	r.stopWG.Add(1)
	r.emitMu.Lock()
	r.mu.Unlock()
	r.hooks.stopStage(StopStageInfo{VM: r.name, Pid: r.status.Pid, Stage: StageShutdown, Reason: reason})
	r.emitMu.Unlock()
	go func() {
		defer r.stopWG.Done()
		tree := r.tree.find() // before the VM is told: see above
		callCtx, cancel := context.WithTimeout(ctx, r.s.GracefulTimeout)
		defer cancel()
		err := r.shutdown(callCtx)
		r.signal(StageTerm, reason, err)
		r.closeIdle()
		signalAll(tree, termSignals...)
	}()
}

// closeIdle closes the host's idle connections to the VM's server once the
// VM has been told to stop, so that its graceful shutdown need not wait for
// them.
func (r *Runtime) closeIdle() {
	r.mu.Lock()
	transport := r.transport
	r.mu.Unlock()
	if transport != nil {
		transport.CloseIdleConnections()
	}
}

// markGone records that the VM has exited, before it is reaped: from then on
// its pid may be reused, so it must not be signalled.
func (r *Runtime) markGone() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gone = true
}

// endLease ends the VM's lease, on its pipe and in the engine (which ends
// the launch there): a VM on client.Serve starts shutting down.
func (r *Runtime) endLease() {
	r.closeLease(true)
	if r.onStop != nil {
		r.onStop()
	}
}

// closeLease closes the host's end of the lease pipe, once: with a byte
// first when the host ends the lease, which tells the VM that its host is
// alive and stopping it; without one once the VM is gone.
func (r *Runtime) closeLease(end bool) {
	if r.lease == nil {
		return
	}
	r.leaseOnce.Do(func() {
		if end {
			r.lease.Write([]byte{'\n'}) // a VM that has exited has no reader: EPIPE
		}
		r.lease.Close()
	})
}

// kill sends SIGKILL at once, for a VM that gets no graceful stop.
func (r *Runtime) kill(reason StopReason) {
	r.stopOnce.Do(func() {
		r.endLease()
		r.signal(StageKill, reason, nil)
	})
}

// signal moves the stop sequence on to stage s, unless it is already there
// or further, or the VM is gone, and tells the hooks. cause is the error of
// what led to it (a failed Shutdown call). The signal is sent under the lock
// that markGone takes, so it cannot reach a process that has taken the pid
// of a reaped VM.
func (r *Runtime) signal(s Stage, reason StopReason, cause error) {
	r.mu.Lock()
	if r.gone || r.stage >= s {
		r.mu.Unlock()
		return
	}
	r.stage = s
	var err error
	if s == StageKill {
		err = kill(r.status.Pid)
	} else {
		err = terminate(r.status.Pid)
	}
	r.emitMu.Lock()
	r.mu.Unlock()
	defer r.emitMu.Unlock()
	// The rest of the tree by pidfds, which cannot reach another process
	// that took a pid: not under mu, which waits on nothing slow. SIGTERM
	// reaches it from stop, once the VM has been told all else.
	if s == StageKill {
		signalAll(r.tree.find(), syscall.SIGKILL)
	}
	if err == nil {
		err = cause
	}
	r.hooks.stopStage(StopStageInfo{VM: r.name, Pid: r.status.Pid, Stage: s, Reason: reason, Err: err})
}
