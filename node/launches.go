package node

import (
	"context"
	"os/exec"
	"sync"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/launcher"
	"github.com/vmre/vmre/registry"
	"github.com/vmre/vmre/sandbox"
	"github.com/vmre/vmre/supervise"
)

// launches is the supervisor's launcher: the node's launcher, with the
// node's bookkeeping around each launch. It knows which version of a
// registry VM each command runs, so that the sealed copy of an old version
// is closed as soon as no launch can use it.
type launches struct {
	n *Node

	mu       sync.Mutex
	l        *launcher.Launcher // made by Run
	pending  map[*exec.Cmd]launchOf
	inflight map[*registry.VM]int // commands made of a version and not yet started
}

// launchOf is what a command launches.
type launchOf struct {
	name    string
	version *registry.VM // nil for a VM of Config.VMs
	sandbox *sandbox.Cmd // the init step's, for a sandboxed VM
}

// start makes the node's launcher.
func (ls *launches) start() error {
	l, err := launcher.New(ls.n.launcherConfig())
	if err != nil {
		return err
	}
	ls.mu.Lock()
	ls.l = l
	ls.mu.Unlock()
	return nil
}

// close closes the node's launcher, once its VMs are stopped.
func (ls *launches) close() {
	ls.mu.Lock()
	l := ls.l
	ls.mu.Unlock()
	if l != nil {
		l.Close()
	}
}

func (ls *launches) gracefulTimeout() time.Duration {
	if t := ls.n.cfg.Launch.GracefulTimeout; t > 0 {
		return t
	}
	return vmre.DefaultGracefulTimeout
}

// outputStats are the launcher's counts of output lines, for the metrics.
func (ls *launches) outputStats() []launcher.OutputStat {
	ls.mu.Lock()
	l := ls.l
	ls.mu.Unlock()
	if l == nil {
		return nil
	}
	return l.OutputStats()
}

// made records the command of a launch about to begin.
func (ls *launches) made(cmd *exec.Cmd, of launchOf) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.pending[cmd] = of
	if of.version != nil {
		ls.inflight[of.version]++
	}
}

// Launch implements supervise.Launcher.
func (ls *launches) Launch(ctx context.Context, req supervise.LaunchRequest) (supervise.Run, error) {
	ls.mu.Lock()
	of, l := ls.pending[req.Cmd], ls.l
	ls.mu.Unlock()
	var run supervise.Run
	err := ErrNotRunning
	if l != nil {
		if of.sandbox != nil {
			// The VM has handshaken: its init step exec'd it, its report
			// is whole. It is kept before the VM is running in the
			// supervisor, so that whoever sees it running finds it.
			onReady := req.OnReady
			req.OnReady = func(r supervise.Ready) {
				ls.n.sandboxReport(of.name, of.sandbox, nil)
				if onReady != nil {
					onReady(r)
				}
			}
		}
		run, err = supervise.FromLauncher(l).Launch(ctx, req)
	}
	if of.sandbox != nil && err != nil {
		// The command has started or never will: what the init step sent
		// is all there is, and its descriptors are the node's to close.
		ls.n.sandboxReport(of.name, of.sandbox, err)
	}
	ls.done(req.Cmd, of)
	// The launcher's Runtime knows the VM's pid (it has released the
	// command's process): a version whose bytes the node has not kept yet
	// is kept from it, in the background.
	if rt, ok := run.(interface{ Status() vmre.Status }); ok && of.version != nil {
		ls.n.keepLater(of.name, of.version, rt.Status().Pid)
	}
	return run, err
}

// done ends the bookkeeping of a launch: its command has started or never
// will. A version no launch can use any more is closed.
func (ls *launches) done(cmd *exec.Cmd, of launchOf) {
	ls.mu.Lock()
	delete(ls.pending, cmd)
	if of.version != nil {
		if ls.inflight[of.version]--; ls.inflight[of.version] <= 0 {
			delete(ls.inflight, of.version)
		}
	}
	ls.mu.Unlock()
	ls.n.closeUnused(of.version)
}

// inUse reports whether a launch may still use version.
func (ls *launches) inUse(version *registry.VM) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.inflight[version] > 0
}
