package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"connectrpc.com/connect"

	"github.com/vmre/vmre"
	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
)

const remoteHead = `Usage: vmre remote env|systemd|k8s|rotate [flags] NAME [-- ARG...]

remote hands a running node's remote VM what it needs to reach the node:
a VM on another host, declared by a file NAME.remote in the node's plugin
directory, started by an orchestrator (systemd, Kubernetes), and
handshaking with the node's engine over TLS (vmre node --engine-listen).
See docs/REMOTE.md.

  env      print the VM's environment: the engine's TLS address, the VM's
           token, the engine certificate's SHA-256 and the ping, as
           KEY=VALUE lines
  systemd  print a systemd unit that runs the VM binary (--exec, with the
           arguments after NAME) with them
  k8s      print a Kubernetes Secret, headless Service and Deployment that
           run the VM image (--image) with them, under the restricted Pod
           Security profile
  rotate   give the VM a new token: the old one is refused at once and its
           session ends (the VM exits 75, to be started again with the new
           one); print the new environment

Examples:
  vmre remote env timestampvm > /etc/vmre/timestampvm.env; chmod 600 /etc/vmre/timestampvm.env
  vmre remote systemd --exec /usr/local/bin/timestampvm --advertise 10.0.0.2:9650 timestampvm -- --log-level debug > /etc/systemd/system/timestampvm.service
  vmre remote k8s --image registry.example/timestampvm:1.2 --namespace vms timestampvm | kubectl apply -f -
  vmre remote rotate timestampvm

`

// remoteFlags are the flags of vmre remote.
type remoteFlags struct {
	clientFlags
	exec, user, envFile    string
	listen, advertise      string
	image, namespace       string
	k8sName                string
	port, uid              int
	cpuRequest, memRequest string
	cpuLimit, memLimit     string
	secretOnly             bool
}

func remoteCommand(ctx context.Context, args []string, e env) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprint(e.stdout, remoteHead)
			return exitOK
		}
		fmt.Fprint(e.stderr, "vmre remote: missing a subcommand: env, systemd, k8s or rotate\nRun 'vmre remote --help' for usage.\n")
		return exitUsage
	}
	sub := args[0]
	var f remoteFlags
	fs := newFlagSet("remote " + sub)
	f.clientFlags.register(fs)
	switch sub {
	case "env", "rotate":
	case "systemd":
		fs.StringVar(&f.exec, "exec", "", "the VM binary's absolute `path` on the VM's host (required); its arguments follow NAME")
		fs.StringVar(&f.user, "user", "", "run the VM as `user` (default: a dynamic user of its own)")
		fs.StringVar(&f.envFile, "env-file", "", "the `file` the unit reads the environment from (default /etc/vmre/NAME.env)")
		fs.StringVar(&f.listen, "listen", "0.0.0.0:9650", "the IP:PORT `address` the VM's server listens on")
		fs.StringVar(&f.advertise, "advertise", "", "the `host:port` the node reaches the VM at, or a host with --listen's port (required when --listen binds every interface)")
	case "k8s":
		fs.StringVar(&f.image, "image", "", "the VM's container `image` (required, but with --secret-only)")
		fs.StringVar(&f.namespace, "namespace", "default", "the Kubernetes `namespace`")
		fs.StringVar(&f.k8sName, "name", "", "the `name` of the VM's Deployment and Service, and of its Secret after vmre- (default: the VM's name, which must then be a DNS label)")
		fs.IntVar(&f.port, "port", 9650, "the `port` the VM's server listens on in its pod")
		fs.IntVar(&f.uid, "uid", 65532, "the user and group `id` the VM runs as (not root)")
		fs.StringVar(&f.cpuRequest, "cpu-request", "100m", "the CPU the VM's pod requests (a Kubernetes `quantity`)")
		fs.StringVar(&f.memRequest, "memory-request", "128Mi", "the memory the VM's pod requests (a Kubernetes `quantity`)")
		fs.StringVar(&f.cpuLimit, "cpu-limit", "1", "the CPU the VM's pod may use at most (a Kubernetes `quantity`)")
		fs.StringVar(&f.memLimit, "memory-limit", "512Mi", "the memory the VM's pod may use at most (a Kubernetes `quantity`)")
		fs.BoolVar(&f.secretOnly, "secret-only", false, "print the Secret alone: after vmre remote rotate, apply it and restart the Deployment")
	default:
		fmt.Fprintf(e.stderr, "vmre remote: unknown subcommand %q: use env, systemd, k8s or rotate\nRun 'vmre remote --help' for usage.\n", sub)
		return exitUsage
	}
	if err := parseFlags(fs, remoteHead, clientTail, args[1:], e); err != nil {
		return flagExit(err)
	}
	rest := fs.Args()
	if len(rest) > 1 && rest[1] == "--" {
		rest = append(rest[:1:1], rest[2:]...)
	}
	switch {
	case len(rest) == 0:
		return usagef(fs, e, "want one NAME, the remote VM's name (its NAME.remote file)")
	case len(rest) > 1 && sub != "systemd":
		return usagef(fs, e, "want one NAME, the remote VM's name (its NAME.remote file); arguments after it are the VM's, for vmre remote systemd")
	}
	name := rest[0]
	var unit unitConfig
	var k8s k8sConfig
	var err error
	switch sub {
	case "systemd":
		unit, err = checkUnit(name, &f, rest[1:])
	case "k8s":
		k8s, err = checkK8s(name, &f)
	}
	if err != nil {
		return usagef(fs, e, "%s", err)
	}
	c, done, err := f.client(e)
	if err != nil {
		return clientFail(e, "remote "+sub, err)
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	var en *adminv1.Enrollment
	if sub == "rotate" {
		res, err := c.RotateEnrollment(ctx, connect.NewRequest(&adminv1.RotateEnrollmentRequest{Name: name}))
		if err != nil {
			return clientFail(e, "remote rotate", err)
		}
		en = res.Msg.GetEnrollment()
	} else {
		res, err := c.GetEnrollment(ctx, connect.NewRequest(&adminv1.GetEnrollmentRequest{Name: name}))
		if err != nil {
			return clientFail(e, "remote "+sub, err)
		}
		en = res.Msg.GetEnrollment()
	}
	switch sub {
	case "systemd":
		writeUnit(e.stdout, en, unit)
	case "k8s":
		writeK8s(e.stdout, en, k8s)
	default:
		writeEnv(e.stdout, en)
	}
	return exitOK
}

// writeEnv prints the VM's environment as KEY=VALUE lines, for a shell, an
// EnvironmentFile or kubectl create secret --from-env-file.
func writeEnv(w io.Writer, en *adminv1.Enrollment) {
	fmt.Fprintf(w, "%s=%s\n%s=%s\n%s=%s\n", vmre.EngineAddressKey, en.GetEngineAddr(), vmre.EngineTokenKey, en.GetToken(),
		vmre.EngineCertKey, en.GetEngineCertSha256())
	if p := en.GetPing().AsDuration(); p > 0 {
		fmt.Fprintf(w, "%s=%s\n", vmre.EnginePingKey, p)
	}
}
