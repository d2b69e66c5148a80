// Package supervise keeps VMs running: each VM of a Supervisor is launched
// through a launcher, and restarted by its policy (never, on failure,
// always) after an exponential backoff with jitter, capped and reset after
// a long run, as Kubernetes' CrashLoopBackOff does (containerd's restart
// monitor, by contrast, checks its containers every 10 s without backoff).
// A launch that cannot succeed on retry (a protocol version mismatch, a
// missing or non-executable file, an exec format error, a refused pin) is
// not retried: the VM's state says why.
//
// Each VM has one goroutine of its own, owned by the Supervisor, which
// launches, waits, decides and sleeps; an operator's Stop, Start and
// Restart reach it through a channel, Remove stops a VM and forgets it,
// and Close stops every VM in parallel and waits for all of them. The
// state of every VM is read with List and Get, and each change is told, in
// order, through Hooks.
//
// Rollout puts a new version of a VM in place of the one that runs, as
// Nomad's update block and Kubernetes' Deployments do for services: the
// new version must complete its handshake, answer its health probe and
// stay up for a minimum time before a deadline, or the VM goes back to
// its old version by itself. Under Replace the old run stops first;
// under StartFirst the new one starts beside it, and the VM switches once
// it is healthy. The hooks tell when a rollout starts, succeeds, is
// reverted or fails, and VM.Rollout shows it.
//
// The Supervisor reaches processes only through its Launcher (FromLauncher
// adapts a *launcher.Launcher) and reads the time from its Clock and the
// jitter from its Rand: a test gives fakes of all three and drives the
// policy without processes or sleeps.
//
// The package knows restart policies and states, not files: the caller
// gives each VM a function that returns the command to launch (package
// registry's verified command, for example). docs/NODE.md shows it at work
// under `vmre node`.
package supervise
