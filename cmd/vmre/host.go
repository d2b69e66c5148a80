package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/vmre/vmre/node"
)

// newNode makes the node of cfg that run and node serve on --listen. The
// admin token is read, and a listen address beyond loopback without one is
// refused, before anything binds.
func newNode(cfg node.Config, listenAddr string, admin *adminFlags, log *slog.Logger, events *eventLog, getenv func(string) string) (*node.Node, string, error) {
	token, err := admin.token(listenAddr, log)
	if err != nil {
		return nil, "", err
	}
	ln, addr, err := listen(listenAddr)
	if err != nil {
		return nil, "", err
	}
	cfg.Listener, cfg.Addr = ln, addr
	cfg.AdminToken, cfg.MetricsToken = token, admin.metricsToken
	cfg.DiscoveryDir, cfg.AdminTokenFile = nodesDir(getenv), admin.tokenFileAbs()
	cfg.Logger = log
	n, err := node.New(cfg)
	if err != nil {
		ln.Close()
		return nil, "", err
	}
	log.Info("node mux listening", "addr", addr, "url", "http://"+addr, "admin_token", token != "")
	events.write(event{Event: "listening", Addr: addr})
	if !listensOnLoopback(listenAddr) { // addr names loopback for 0.0.0.0 and [::] too
		log.Warn("the node mux listens beyond loopback: the admin service takes only the token of --admin-token-file; "+
			"GET /v1/vms, /healthz and the engine are open", "listen", listenAddr, "metrics_token", admin.metricsToken)
	}
	return n, addr, nil
}

// runningNode is a node's Run in a goroutine of the command's own: the
// command waits for it before it returns.
type runningNode struct {
	n      *node.Node
	cancel context.CancelCauseFunc // ends Run: the VMs stop gracefully; the node logs the cause
	unkill func() bool
	done   chan struct{} // closed when Run has returned
	err    error         // Run's error, read after done
}

// runNode runs n until stop is called or a part of it fails; kill (a
// second signal) cuts the VMs' graceful stop short.
func runNode(n *node.Node, kill context.Context) *runningNode {
	ctx, cancel := context.WithCancelCause(context.Background())
	r := &runningNode{n: n, cancel: cancel, done: make(chan struct{})}
	r.unkill = context.AfterFunc(kill, func() { n.Kill(context.Cause(kill)) })
	go func() {
		defer close(r.done)
		r.err = n.Run(ctx)
	}()
	return r
}

// stop ends the node and waits until Run has returned.
func (r *runningNode) stop() error {
	return r.stopBecause(errors.New("vmre run is done"))
}

// stopBecause ends the node, which logs why, and waits until Run has
// returned.
func (r *runningNode) stopBecause(why error) error {
	r.cancel(why)
	<-r.done
	r.unkill()
	return r.err
}
