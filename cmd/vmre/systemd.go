package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vmre/vmre/internal/sdnotify"
	"github.com/vmre/vmre/node"
	"github.com/vmre/vmre/supervise"
)

// serviceManager tells systemd, when it started the node with
// NOTIFY_SOCKET (Type=notify), how the node is: READY=1 once the plugin
// directory is loaded and each of its VMs' first launch is over,
// RELOADING=1 and READY=1 around a reload, STOPPING=1, the VMs' counts as
// STATUS=, and WATCHDOG=1 from the node's own loop, so that a stuck loop
// misses it. Without NOTIFY_SOCKET it does nothing.
type serviceManager struct {
	n       *sdnotify.Notifier
	log     *slog.Logger
	serving *atomic.Bool
	ready   bool
	status  string
}

func newServiceManager(getenv func(string) string, log *slog.Logger, serving *atomic.Bool) *serviceManager {
	return &serviceManager{n: sdnotify.New(getenv, os.Getpid()), log: log, serving: serving}
}

func (s *serviceManager) send(what string, err error) {
	if err != nil {
		s.log.Warn("cannot tell the service manager "+what, "error", err.Error())
	}
}

// changed tells of the VMs' states: READY=1 the first time every VM's
// first launch is over, STATUS= when the counts change.
func (s *serviceManager) changed(n *node.Node) {
	if !s.n.Enabled() {
		return
	}
	vms := n.List()
	status := vmCounts(vms)
	if !s.ready {
		if !s.serving.Load() || launching(vms) {
			return
		}
		s.ready, s.status = true, status
		s.send("READY=1", s.n.Ready(status))
		return
	}
	if status != s.status {
		s.status = status
		s.send("STATUS=", s.n.Status(status))
	}
}

// reloading and reloaded frame a reload.
func (s *serviceManager) reloading() { s.send("RELOADING=1", s.n.Reloading()) }

func (s *serviceManager) reloaded(n *node.Node) {
	s.status = vmCounts(n.List())
	s.send("READY=1", s.n.Ready(s.status))
}

func (s *serviceManager) stopping(n *node.Node) {
	s.send("STOPPING=1", s.n.Stopping("stopping "+vmCounts(n.List())))
}

func (s *serviceManager) alive() { s.send("WATCHDOG=1", s.n.Alive()) }

// watchdog ticks at half the interval systemd's watchdog wants, as
// sd_watchdog_enabled(3) advises; it never ticks without one.
func (s *serviceManager) watchdog() *ticker {
	if d := s.n.Watchdog(); d > 0 {
		return &ticker{t: time.NewTicker(d / 2)}
	}
	return &ticker{}
}

// ticker is a time.Ticker that may be none.
type ticker struct{ t *time.Ticker }

// C is the ticker's channel; nil, which never delivers, without one.
func (t *ticker) C() <-chan time.Time {
	if t.t == nil {
		return nil
	}
	return t.t.C
}

func (t *ticker) Stop() {
	if t.t != nil {
		t.t.Stop()
	}
}

// launching reports whether a VM's launch is in progress.
func launching(vms []supervise.VM) bool {
	for _, vm := range vms {
		if vm.State == supervise.StateStarting {
			return true
		}
	}
	return false
}

// vmCounts is the status line of the VMs: "3 VMs: 2 running, 1 failed".
func vmCounts(vms []supervise.VM) string {
	counts := map[supervise.State]int{}
	var order []supervise.State
	for _, vm := range vms {
		if counts[vm.State] == 0 {
			order = append(order, vm.State)
		}
		counts[vm.State]++
	}
	var parts []string
	for _, st := range order {
		parts = append(parts, fmt.Sprintf("%d %s", counts[st], st))
	}
	noun := "VMs"
	if len(vms) == 1 {
		noun = "VM"
	}
	if len(parts) == 0 {
		return "0 VMs"
	}
	return fmt.Sprintf("%d %s: %s", len(vms), noun, strings.Join(parts, ", "))
}
