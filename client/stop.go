package client

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"connectrpc.com/connect"
)

// hostCheckDelay bounds how long a VM stopped by a signal waits for its
// lease to say whether the host is alive. A host that stops its VM ends the
// lease at once; a dying host's parent-death signal can come a moment
// before its sockets close and the lease breaks.
const hostCheckDelay = 250 * time.Millisecond

// lease is the VM's side of its lease, held by one goroutine: a stream from
// the engine, or the pipe the host gave the VM.
type lease struct {
	end    chan error // the lease's result; nil once received
	cancel func()     // ends the lease's goroutine
}

// startLease holds the lease over the network: a stream of the engine.
func startLease(ctx context.Context, ec *engineClient) *lease {
	ctx, cancel := context.WithCancel(ctx)
	l := &lease{end: make(chan error, 1), cancel: cancel}
	go func() { l.end <- ec.lease(ctx) }()
	return l
}

// errHostGone is the end of a lease pipe without the host's byte: the
// kernel closed the host's end, as it does when the host dies.
var errHostGone = errors.New("the lease pipe closed without the host ending it")

// errLeaseStopped is the end of a lease pipe that the VM closed itself.
var errLeaseStopped = errors.New("the VM stopped holding its lease")

// startPipeLease holds the lease on pipe, the VM's end of the host's pipe:
// the host writes a byte to end the lease, and its end closes with it.
func startPipeLease(pipe *os.File) *lease {
	l := &lease{end: make(chan error, 1), cancel: func() { pipe.Close() }}
	go func() {
		var b [1]byte
		n, err := pipe.Read(b[:])
		switch {
		case n > 0:
			err = nil // the host ended the lease
		case errors.Is(err, os.ErrClosed):
			err = errLeaseStopped
		case err == io.EOF:
			err = errHostGone
		}
		l.end <- err
	}()
	return l
}

// ended returns the channel of the lease's result, or nil (which never
// delivers) when there is no lease or its result was already taken.
func (l *lease) ended() <-chan error {
	if l == nil {
		return nil
	}
	return l.end
}

// stop ends the lease and waits for its goroutine.
func (l *lease) stop() {
	if l == nil {
		return
	}
	l.cancel()
	if l.end != nil {
		<-l.end
		l.end = nil
	}
}

// brokenWithin waits up to d for the lease to end, and reports whether it
// broke, which means the host is gone. A lease the host ended cleanly, or
// one still held after d, means it is alive.
func (l *lease) brokenWithin(d time.Duration) bool {
	if l == nil || l.end == nil {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case err := <-l.end:
		l.end = nil
		return err != nil && connect.CodeOf(err) != connect.CodeUnimplemented && !engineAnswered(err)
	case <-t.C:
		return false
	}
}

// stopCause is why awaitStop returned.
type stopCause struct {
	hostDead    bool  // the lease broke: the host is gone
	askLease    bool  // a signal or ctx: the lease has yet to tell whether the host is alive
	hostEnded   bool  // the host ended the lease: it is stopping the VM
	serveFailed error // the VM's server failed
	restart     error // (a remote VM) the node ended the session and wants the VM back: aborted
	refused     error // (a remote VM) the node refused the lease
}

// awaitStop serves until a signal or ctx, the end of the lease, or a
// failure of the VM's server, and says which. A remote VM's lease ends in
// more ways than a launched VM's (docs/REMOTE.md): cleanly when the node's
// operator stopped it, with aborted when the node wants it started again.
func awaitStop(ctx context.Context, l *lease, serveErr <-chan error, remote bool, log *slog.Logger) stopCause {
	for {
		select {
		case <-ctx.Done():
			log.LogAttrs(ctx, slog.LevelInfo, "shutting down", slog.String("reason", context.Cause(ctx).Error()))
			return stopCause{askLease: true}
		case err := <-l.ended():
			l.end = nil
			switch {
			case remote && err == nil:
				log.Info("shutting down", "reason", "the node's operator stopped this VM: its handshakes are refused until it is started on the node")
				return stopCause{hostEnded: true}
			case remote && connect.CodeOf(err) == connect.CodeAborted:
				log.Warn("shutting down", "reason", "the node ended this VM's session, to be started again", "error", connectMessage(err))
				return stopCause{restart: err}
			case remote && engineAnswered(err):
				log.Error("shutting down", "reason", "the node refused the lease", "error", err)
				return stopCause{refused: err}
			case err == nil:
				log.Info("shutting down", "reason", "the host ended the lease")
				keepCatchingSIGTERM()
				return stopCause{hostEnded: true}
			case engineAnswered(err):
				// The host refused the lease: it ended the launch before the
				// lease was asked for, stopping the VM.
				log.Info("shutting down", "reason", "the host ended the launch", "error", err)
				keepCatchingSIGTERM()
				return stopCause{hostEnded: true}
			case connect.CodeOf(err) == connect.CodeUnimplemented:
				log.Warn("the host does not offer a lease; serving until stopped by a signal")
			default:
				log.Warn("shutting down", "reason", "lost the lease to the host", "error", err)
				return stopCause{hostDead: true}
			}
		case err := <-serveErr:
			return stopCause{serveFailed: err}
		}
	}
}

// awaitSIGTERM waits, asleep, up to d for the SIGTERM that a host sends
// before it ends the lease, which may still be on its way to sigCtx: the
// lease pipe can be faster. Serve's deferred signal.Stop would otherwise
// wait for that delivery in a loop of runtime.Gosched, which keeps the
// thread busy, and on a busy host spends milliseconds of CPU before the
// runtime's signal goroutine runs.
func awaitSIGTERM(sigCtx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-sigCtx.Done():
	case <-t.C:
	}
}

// keepCatchingSIGTERM makes SIGTERM harmless until the process exits. A host
// that stops its VM ends the lease and sends SIGTERM, which can come after
// Serve has stopped catching it; Go's default would then kill the VM in the
// middle of its exit. A channel of its own, never stopped, keeps the signal
// caught without the window that signal.Stop and signal.Ignore leave while
// they change its handling.
func keepCatchingSIGTERM() {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGTERM)
}

// connectMessage is the message of a Connect error without its code, or
// the error's text.
func connectMessage(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Message()
	}
	return err.Error()
}

// engineAnswered reports whether err is an answer of the engine rather than
// a failure to reach it.
func engineAnswered(err error) bool {
	switch connect.CodeOf(err) {
	case connect.CodeUnauthenticated, connect.CodeInvalidArgument, connect.CodeFailedPrecondition,
		connect.CodeAlreadyExists, connect.CodeNotFound, connect.CodeResourceExhausted:
		return true
	}
	return false
}

// hostGoneWithin waits up to d for the VM to be handed to another parent,
// which happens as its host's exit completes.
func hostGoneWithin(hostPid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !hostGone(hostPid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}
