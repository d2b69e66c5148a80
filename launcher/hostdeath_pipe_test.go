package launcher_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/server"
)

// readyLineVM is the "ok" VM that also prints "ready" on stdout once its
// handshake has been answered.
func readyLineVM() int {
	return serve(context.Background(), logger, client.WithOnReady(func(client.Ready) { fmt.Println("ready") }))
}

// pipeHostProcess serves an engine and starts a VM on client.Serve with
// plain os/exec and a lease pipe, as the launcher gives one: no
// parent-death signal, no process group, nothing but the pipe ties the VM
// to this process. It prints "vm=PID" once the VM's handshake has been
// answered, and runs until SIGTERM.
func pipeHostProcess() int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	e := server.New(server.Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- server.Serve(ctx, ln, e.Handler()) }()
	defer func() {
		e.Close()
		cancel()
		<-served
	}()
	launch, err := e.NewLaunch(server.LaunchConfig{Initializer: server.AcceptVersions("", vmre.ProtocolVersion)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	vmLog, err := os.OpenFile(os.Getenv(vmLogKey), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer vmLog.Close()
	vmEnd, lease, err := os.Pipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	vm := vmretest.Command("ok-ready")
	vm.Env = append(vm.Env, vmre.EngineAddressKey+"="+ln.Addr().String(), vmre.EngineTokenKey+"="+launch.Token(),
		vmre.LeaseFDKey+"=3")
	vm.ExtraFiles = []*os.File{vmEnd}
	vm.Stderr = vmLog
	stdout, err := vm.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	err = vm.Start()
	vmEnd.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	lines := bufio.NewScanner(stdout)
	for lines.Scan() && strings.TrimSpace(lines.Text()) != "ready" {
	}
	fmt.Printf("vm=%d\n", vm.Process.Pid)
	<-term
	lease.Write([]byte{'\n'}) // ends the lease: the VM shuts down
	lease.Close()
	vm.Wait()
	return 0
}
