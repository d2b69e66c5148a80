// Package launcher is the host side of a VM's life: it execs the VM plugin
// with the engine's address and a launch token, waits for its handshake,
// pipes its output into the host's logger, and stops it with SIGTERM, a
// graceful timeout and SIGKILL to its whole process group.
//
//	l, err := launcher.New(launcher.Config{Logger: logger})
//	if err != nil { ... }
//	defer l.Close()
//	rt, err := l.Launch(ctx, exec.Command("./myvm"))
//	if err != nil { ... } // errors.Is(err, vmre.ErrHandshakeFailed)
//	conn := myv1connect.NewMyServiceClient(httpClient, "http://"+rt.Status().Addr)
//	...
//	rt.Stop(ctx)
//	<-rt.Done()
//
// The package knows processes, not proto fields: the handshake itself is
// served by package server.
package launcher
