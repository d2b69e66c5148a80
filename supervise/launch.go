package supervise

import (
	"context"
	"os/exec"
	"time"

	"github.com/vmre/vmre/launcher"
)

// Launcher launches the VMs of a Supervisor. FromLauncher makes one of a
// *launcher.Launcher; a test gives a fake that starts no process.
type Launcher interface {
	// Launch starts one run of a VM and returns once its handshake has
	// completed, having called req.OnReady. On failure the VM's process,
	// if any, has been reaped when it returns, and a *launcher.LaunchError
	// says what failed. An ended ctx abandons the launch.
	Launch(ctx context.Context, req LaunchRequest) (Run, error)
}

// LaunchRequest is one launch that a Supervisor asks of its Launcher.
type LaunchRequest struct {
	// Name names the VM in the launcher's logs and events.
	Name string
	// Cmd is the unstarted command, made by the Spec's Command.
	Cmd *exec.Cmd
	// Hooks are the Spec's launcher hooks, or nil.
	Hooks *launcher.Hooks
	// OnReady must be called once the handshake has completed, before
	// Launch returns and before the launcher's Ready hooks: whoever learns
	// of the VM from them finds it running in the Supervisor.
	OnReady func(Ready)
}

// Ready is what a launch tells once the VM's handshake has completed.
type Ready struct {
	Pid             int
	Addr            string
	ProtocolVersion uint
	// Started is when the process started, and Handshake the time from
	// its exec to the completed handshake.
	Started   time.Time
	Handshake time.Duration
}

// Run is one run of a VM, from its completed handshake to its exit;
// *launcher.Runtime is one.
type Run interface {
	// Done is closed once the VM has exited and been reaped.
	Done() <-chan struct{}
	// Exit says how it ended, once Done is closed.
	Exit() (launcher.Exit, bool)
	// Stop starts its graceful stop and returns at once; ctx cuts the
	// grace short. Repeated calls are no-ops.
	Stop(ctx context.Context)
	// LastStderr returns the last lines it wrote to stderr.
	LastStderr() []string
}

// FromLauncher is the Launcher of l: each launch starts a process through
// it.
func FromLauncher(l *launcher.Launcher) Launcher { return processes{l} }

// processes launches VMs as processes of a *launcher.Launcher.
type processes struct{ l *launcher.Launcher }

func (p processes) Launch(ctx context.Context, req LaunchRequest) (Run, error) {
	opts := []launcher.LaunchOption{launcher.WithName(req.Name)}
	if req.Hooks != nil {
		opts = append(opts, launcher.WithHooks(req.Hooks))
	}
	if req.OnReady != nil {
		opts = append(opts, launcher.WithReady(func(rt *launcher.Runtime) {
			st := rt.Status()
			req.OnReady(Ready{Pid: st.Pid, Addr: st.Addr, ProtocolVersion: rt.ProtocolVersion(),
				Started: rt.Started(), Handshake: rt.HandshakeDuration()})
		}))
	}
	rt, err := p.l.Launch(ctx, req.Cmd, opts...)
	if err != nil {
		return nil, err // not a nil *Runtime in a non-nil Run
	}
	return rt, nil
}
