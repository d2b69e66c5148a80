//go:build unix

package node_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/vmre/vmre/node"
	"github.com/vmre/vmre/supervise"
)

// A node developer's node: its own routes and registry, and beside them
// what `vmre node` runs, until SIGINT or SIGTERM. README's "Embedding the
// engine in a node" shows this code (TestREADMEShowsTheExample keeps the
// two the same).
func Example() {
	plugins, state := examplePlugins() // a plugin directory holding the example VM, and a data directory
	logger := slog.New(slog.DiscardHandler)

	reg := prometheus.NewRegistry() // the node developer's own, with its Go collector
	reg.MustRegister(collectors.NewGoCollector())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	r := chi.NewRouter()
	r.Get("/status", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "my node\n") })
	n, err := node.New(node.Config{
		PluginDir:  plugins,
		DataDir:    state,
		Restart:    supervise.OnFailure,
		Listener:   ln,  // Run serves r on it
		Handler:    r,   // which mounts the node's routes below
		Registerer: reg, // the node's collectors join the node developer's
		Logger:     logger,
		Hooks:      &node.Hooks{State: interruptOnceRunning}, // for this example: SIGTERM once the VM runs
	})
	if err != nil {
		log.Fatal(err)
	}
	r.Mount("/", n.Handler()) // /v1/vms, /metrics (reg's), /healthz, the admin service, the engine

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := n.Run(ctx); err != nil { // until a signal: then every VM stops gracefully
		log.Fatal(err)
	}
	fmt.Println("stopped")
	// Output:
	// examplevm running
	// stopped
}

// examplePlugins makes a plugin directory holding the example VM, and a
// data directory; both are removed at the end of the tests.
func examplePlugins() (plugins, state string) {
	plugins, state = filepath.Join(buildDir, "plugins"), filepath.Join(buildDir, "state")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		log.Fatal(err)
	}
	b, err := os.ReadFile(exampleVM)
	if err == nil {
		err = os.WriteFile(filepath.Join(plugins, "examplevm"), b, 0o755)
	}
	if err != nil {
		log.Fatal(err)
	}
	return plugins, state
}

var interruptOnce sync.Once

// interruptOnceRunning sends the process SIGTERM once a VM runs, as an
// operator's Ctrl-C would.
func interruptOnceRunning(vm supervise.VM) {
	if vm.State != supervise.StateRunning {
		return
	}
	interruptOnce.Do(func() {
		fmt.Println(vm.Name, "running")
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
	})
}
