package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"connectrpc.com/connect"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
)

const remoteHead = `Usage: vmre remote env|systemd|k8s|rotate [flags] NAME

remote hands a running node's remote VM what it needs to reach the node:
a VM on another host, declared by a file NAME.remote in the node's plugin
directory, started by an orchestrator (systemd, Kubernetes), and
handshaking with the node's engine over TLS (vmre node --engine-listen).
See docs/REMOTE.md.

  env      print the VM's environment: the engine's TLS address, the VM's
           token and the engine certificate's SHA-256, as KEY=VALUE lines
  systemd  print a systemd unit that runs the VM binary (--exec) with them
  k8s      print a Kubernetes Secret and Deployment that run the VM image
           (--image) with them
  rotate   give the VM a new token: the old one is refused at once and its
           session ends; print the new environment

Examples:
  vmre remote env timestampvm > /etc/vmre/timestampvm.env; chmod 600 /etc/vmre/timestampvm.env
  vmre remote systemd --exec /usr/local/bin/timestampvm timestampvm > /etc/systemd/system/timestampvm.service
  vmre remote k8s --image registry.example/timestampvm:1.2 timestampvm | kubectl apply -f -
  vmre remote rotate timestampvm

`

// remoteFlags are the flags of vmre remote.
type remoteFlags struct {
	clientFlags
	exec, user, envFile string
	listen, advertise   string
	image, namespace    string
	port                int
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
		fs.StringVar(&f.exec, "exec", "", "the VM binary's absolute `path` on the VM's host, and its arguments (required)")
		fs.StringVar(&f.user, "user", "", "run the VM as `user` (default: a dynamic user of its own)")
		fs.StringVar(&f.envFile, "env-file", "", "the `file` the unit reads the environment from (default /etc/vmre/NAME.env)")
		fs.StringVar(&f.listen, "listen", "0.0.0.0:9650", "the `address` the VM's server listens on")
		fs.StringVar(&f.advertise, "advertise", "", "the `host:port` the node reaches the VM at (default: the host's address the VM listens on)")
	case "k8s":
		fs.StringVar(&f.image, "image", "", "the VM's container `image` (required)")
		fs.StringVar(&f.namespace, "namespace", "default", "the Kubernetes `namespace`")
		fs.IntVar(&f.port, "port", 9650, "the `port` the VM's server listens on in its pod")
	default:
		fmt.Fprintf(e.stderr, "vmre remote: unknown subcommand %q: use env, systemd, k8s or rotate\nRun 'vmre remote --help' for usage.\n", sub)
		return exitUsage
	}
	if err := parseFlags(fs, remoteHead, clientTail, args[1:], e); err != nil {
		return flagExit(err)
	}
	if fs.NArg() != 1 {
		return usagef(fs, e, "want one NAME, the remote VM's name (its NAME.remote file)")
	}
	switch {
	case sub == "systemd" && !strings.HasPrefix(f.exec, "/"):
		return usagef(fs, e, "--exec takes the absolute path of the VM binary on its host")
	case sub == "k8s" && f.image == "":
		return usagef(fs, e, "--image names the VM's container image")
	}
	c, done, err := f.client(e)
	if err != nil {
		return clientFail(e, "remote "+sub, err)
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	name := fs.Arg(0)
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
		writeUnit(e.stdout, en, &f)
	case "k8s":
		writeK8s(e.stdout, en, &f)
	default:
		writeEnv(e.stdout, en)
	}
	return exitOK
}

func writeEnv(w io.Writer, en *adminv1.Enrollment) {
	fmt.Fprintf(w, "%s=%s\n%s=%s\n%s=%s\n", vmre.EngineAddressKey, en.GetEngineAddr(), vmre.EngineTokenKey, en.GetToken(),
		vmre.EngineCertKey, en.GetEngineCertSha256())
}

// writeUnit prints a systemd unit: the token stays in the environment
// file, readable by root alone; the unit holds no secret.
func writeUnit(w io.Writer, en *adminv1.Enrollment, f *remoteFlags) {
	name := en.GetName()
	envFile := f.envFile
	if envFile == "" {
		envFile = "/etc/vmre/" + name + ".env"
	}
	fmt.Fprintf(w, `# The remote VM %[1]s of a vmre node, made by: vmre remote systemd %[1]s
# Its environment holds its token: write it, readable by root alone, with
#   vmre remote env %[1]s > %[2]s && chmod 600 %[2]s
[Unit]
Description=vmre remote VM %[1]s
Wants=network-online.target
After=network-online.target

[Service]
Type=exec
ExecStart=%[3]s
EnvironmentFile=%[2]s
Environment=%[4]s=%[5]s
`, name, envFile, f.exec, client.ListenAddrKey, f.listen)
	if f.advertise != "" {
		fmt.Fprintf(w, "Environment=%s=%s\n", client.AdvertiseAddrKey, f.advertise)
	}
	if f.user != "" {
		fmt.Fprintf(w, "User=%s\n", f.user)
	} else {
		fmt.Fprintln(w, "DynamicUser=yes")
	}
	fmt.Fprint(w, `# A VM that lost its node exits non-zero; it starts again and handshakes
# anew once the node is reachable.
Restart=always
RestartSec=5
KillSignal=SIGTERM
TimeoutStopSec=30
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
`)
}

// writeK8s prints a Secret holding the VM's environment and a Deployment
// of one replica that runs the VM image with it.
func writeK8s(w io.Writer, en *adminv1.Enrollment, f *remoteFlags) {
	name := en.GetName()
	fmt.Fprintf(w, `# The remote VM %[1]s of a vmre node, made by: vmre remote k8s %[1]s
apiVersion: v1
kind: Secret
metadata:
  name: vmre-%[1]s
  namespace: %[2]s
  labels:
    app.kubernetes.io/name: %[1]s
    app.kubernetes.io/managed-by: vmre
type: Opaque
stringData:
  %[3]s: %[4]q
  %[5]s: %[6]q
  %[7]s: %[8]q
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
  namespace: %[2]s
  labels:
    app.kubernetes.io/name: %[1]s
    app.kubernetes.io/managed-by: vmre
spec:
  replicas: 1
  strategy:
    type: Recreate
  selector:
    matchLabels:
      app.kubernetes.io/name: %[1]s
  template:
    metadata:
      labels:
        app.kubernetes.io/name: %[1]s
    spec:
      terminationGracePeriodSeconds: 30
      containers:
        - name: vm
          image: %[9]q
          envFrom:
            - secretRef:
                name: vmre-%[1]s
          env:
            - name: %[10]s
              value: "0.0.0.0:%[11]d"
            - name: %[12]s
              valueFrom:
                fieldRef:
                  fieldPath: status.podIP
          ports:
            - name: vm
              containerPort: %[11]d
              protocol: TCP
`, name, f.namespace, vmre.EngineAddressKey, en.GetEngineAddr(), vmre.EngineTokenKey, en.GetToken(),
		vmre.EngineCertKey, en.GetEngineCertSha256(), f.image, client.ListenAddrKey, f.port, client.AdvertiseAddrKey)
}
